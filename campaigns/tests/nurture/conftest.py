"""A real SMTP server (aiosmtpd) on a free localhost port for the nurture tests, and
the mailer settings that point Django at it."""

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller


@dataclass
class Inbox:
    """Keeps every message accepted; `refuse` makes it answer with that reply instead
    (e.g. "451 4.3.0 try later" or "550 5.1.1 no such user")."""

    envelopes: list = field(default_factory=list)
    refuse: dict = field(default_factory=dict)  # address -> SMTP reply, "*" for all
    refuse_senders: dict = field(default_factory=dict)  # MAIL FROM address -> SMTP reply
    senders_tried: list = field(default_factory=list)  # every MAIL FROM address, in order

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.senders_tried.append(address)
        reply = self.refuse_senders.get(address)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.refuse.get(address) or self.refuse.get("*")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class SMTPServer:
    host: str
    port: int
    inbox: Inbox


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SMTPServer]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ready_timeout=30)
    controller.start()
    try:
        yield SMTPServer(host="127.0.0.1", port=port, inbox=inbox)
    finally:
        controller.stop()


@pytest.fixture
def smtp(smtp_server: SMTPServer, settings) -> SMTPServer:
    smtp_server.inbox.envelopes.clear()
    smtp_server.inbox.refuse.clear()
    smtp_server.inbox.refuse_senders.clear()
    smtp_server.inbox.senders_tried.clear()
    settings.MAILERS = {
        "default": {
            "BACKEND": "campaigns.nurture.smtp.EmailBackend",  # production's default
            "OPTIONS": {"host": smtp_server.host, "port": smtp_server.port, "timeout": 10},
        }
    }
    return smtp_server
