"""The nurture mail's own serialiser (campaigns.nurture.mime): the raw bytes are
standards-correct (7-bit, RFC 2047 words and line lengths, multipart/alternative),
parse back with the email package to what the email package itself would have
written, and reach a real SMTP server (aiosmtpd) with the Japanese intact."""

import email
import email.message
import email.policy
import re
from email.header import decode_header, make_header

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives

from campaigns.nurture import mime
from campaigns.nurture.sending import NurtureEmail, _from_header, build_email
from campaigns.tests.factories import (
    EmailTemplateFactory,
    EnrolmentFactory,
    OutgoingMessageFactory,
    SenderIdentityFactory,
)
from leads.models import ConsentStatus
from leads.tests.factories import LeadFactory

LONG_NAME = "両輪商事株式会社 東日本営業本部 マーケティング推進部 🌸 ニュース配信係"
LONG_SUBJECT = (
    "【ご案内】山田様、来月開催の営業DXセミナー（東京・大阪・オンライン同時開催）のお知らせ 🎉"
)
UNSUBSCRIBE = "https://app.ryorin.example/n/u/WzEsMiwzXQ:1abcde:" + "x" * 43 + "/"


def nurture_email(
    *,
    subject=LONG_SUBJECT,
    name=LONG_NAME,
    text="山田様\n\n来月のセミナーのご案内です。\n",
    html="<p>山田様</p>",
    **kwargs,
) -> NurtureEmail:
    message = NurtureEmail(
        subject=subject,
        body=text,
        from_email=_from_header(name, "news@sender.example.com"),
        to=kwargs.pop("to", ["taro.yamada@example.co.jp"]),
        reply_to=["sales@sender.example.com"],
        headers={
            "Message-ID": "<ryorin.1.3@sender.example.com>",
            "List-Unsubscribe": f"<{UNSUBSCRIBE}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        **kwargs,
    )
    message.sender_parts = (name, "news@sender.example.com")
    if html:
        message.attach_alternative(html, "text/html")
    return message


def email_package_bytes(message: NurtureEmail) -> bytes:
    """What the email package writes for the same mail (the path this replaces)."""
    msg = EmailMultiAlternatives.message(message, policy=email.policy.SMTP)
    msg.policy = msg.policy.clone(max_line_length=998)
    return msg.as_bytes()


def header_lines(raw: bytes) -> list[str]:
    return raw.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")


def decoded(raw: bytes, name: str) -> str:
    """A header as RFC 2047 decodes it (Python's address parser keeps the space
    between two encoded words of a display name; decode_header does not)."""
    value = email.message_from_bytes(raw, policy=email.policy.compat32)[name]
    return str(make_header(decode_header(value)))


def assert_wire_correct(raw: bytes) -> None:
    raw.decode("ascii")  # 7-bit only
    assert b"\n" not in raw.replace(b"\r\n", b"")  # no bare line ends
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
    for line in header_lines(raw):
        if "=?" in line:
            assert len(line) <= 76, line  # RFC 2047 2
        for word in re.findall(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=", line):
            assert len(word) <= 75
        assert line.strip(), "a folded header line holds more than whitespace"
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    for part in parsed.walk():
        assert not part.defects, part.defects


def test_a_built_mail_takes_the_lean_path_and_is_correct_on_the_wire(world_a):
    lead = LeadFactory(
        tenant=world_a.tenant, family_name="山田", email_consent=ConsentStatus.GRANTED
    )
    outgoing = OutgoingMessageFactory(
        tenant=world_a.tenant, enrolment=EnrolmentFactory(tenant=world_a.tenant, lead=lead)
    )
    sender = SenderIdentityFactory(tenant=world_a.tenant, from_name=LONG_NAME)
    template = EmailTemplateFactory(
        tenant=world_a.tenant,
        subject="{{ lead.family_name }}様、" + LONG_SUBJECT,
        html='<p>{{ lead.family_name }}様</p><p><a href="https://example.jp/s">申込</a></p>',
    )
    built = build_email(
        outgoing=outgoing, lead=lead, template=template, sender=sender, tenant=world_a.tenant
    )
    message = built.message.message(policy=email.policy.SMTP)
    assert isinstance(message, mime.SerialisedMessage)
    raw = message.as_bytes()
    assert_wire_correct(raw)

    lines = header_lines(raw)
    assert sum(line.startswith("=?") or line.startswith(" =?") for line in lines) >= 3
    [unsubscribe] = [line for line in lines if line.startswith("List-Unsubscribe:")]
    assert re.fullmatch(r"List-Unsubscribe: <https?://\S+/n/u/[\w:-]+/>", unsubscribe)
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    assert lines[0] == "MIME-Version: 1.0"

    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == built.subject
    assert decoded(raw, "From") == f"{LONG_NAME} <{sender.from_email}>"
    assert parsed["To"] == lead.email
    assert parsed["Reply-To"] == sender.reply_to
    assert parsed["Message-ID"] == built.message_id
    assert parsed["Date"].datetime is not None
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    text, html = (p.get_content() for p in parts)
    assert text.replace("\r\n", "\n").rstrip("\n") == built.message.body
    assert html.replace("\r\n", "\n").rstrip("\n") == built.message.alternatives[0].content
    for body in (text, html):
        assert "山田様" in body
        assert LONG_NAME in body
        assert "東京都千代田区" in body


@pytest.mark.parametrize(
    ("subject", "name", "text", "html"),
    [
        (LONG_SUBJECT, LONG_NAME, "本文\n二行目\n", "<p>本文</p>"),
        ("Plain ASCII subject", "Ryorin News", "Hello\n.\nFrom here\n", "<p>Hi</p>"),
        ("Looks like =?utf-8?q?a_word?= but is text", 'Sales, "East" (JP)', "x\n", ""),
        ("A long ASCII subject " * 8, "株式会社サンプル", "line " * 60 + "\n", ""),
        ("", "", "本文だけ\r\n改行はCRLF\r\n", "<p>" + "長い行" * 200 + "</p>"),
        ("絵文字 🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣🍣", "山田 🍣", "🍣\n", "<b>🍣</b>"),
    ],
)
def test_the_bytes_read_back_as_the_email_package_reads_its_own(subject, name, text, html):
    message = nurture_email(subject=subject, name=name, text=text, html=html)
    lean = message.message(policy=email.policy.SMTP)
    assert isinstance(lean, mime.SerialisedMessage)
    raw = lean.as_bytes()
    assert_wire_correct(raw)
    ours = email.message_from_bytes(raw, policy=email.policy.default)
    theirs = email.message_from_bytes(email_package_bytes(message), policy=email.policy.default)
    assert " ".join(ours["Subject"].split()) == " ".join(subject.split())
    if "=?" not in subject:  # the email package leaves that text raw: readers decode it
        assert ours["Subject"] == theirs["Subject"]
    for name_ in ("To", "Reply-To", "Message-ID", "List-Unsubscribe"):
        assert str(ours[name_]) == str(theirs[name_]), name_
    assert decoded(raw, "From") == decoded(email_package_bytes(message), "From")
    assert ours.get_content_type() == theirs.get_content_type()
    for mine, reference in zip(ours.walk(), theirs.walk(), strict=True):
        assert mine.get_content_type() == reference.get_content_type()
        if mine.get_content_maintype() == "text":
            assert mine.get_content().replace("\r\n", "\n").rstrip("\n") == (
                reference.get_content().replace("\r\n", "\n").rstrip("\n")
            )


def test_ascii_that_looks_encoded_is_encoded_and_names_with_specials_are_quoted():
    raw = nurture_email(
        subject="Sale =?utf-8?b?5bGx?= today", name='Sales, "East"', html=""
    ).message(policy=email.policy.SMTP)
    lines = header_lines(raw.as_bytes())
    assert next(line for line in lines if line.startswith("Subject:")).startswith(
        "Subject: =?utf-8?b?"
    )
    assert 'From: "Sales, \\"East\\"" <news@sender.example.com>' in lines
    parsed = email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Sale =?utf-8?b?5bGx?= today"
    assert parsed["From"].addresses[0].display_name == 'Sales, "East"'
    assert parsed.get_content_type() == "text/plain"  # no HTML: one part


def test_a_line_break_in_a_header_is_refused():
    for bad in ("Subject\r\nBcc: victim@example.com", "Subject\nX: y"):
        with pytest.raises(ValueError, match="linefeed or carriage return"):
            nurture_email(subject=bad).message()
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        mime.header_address("From", "Name\r\nBcc: victim@example.com", "a@example.com")
    with pytest.raises(ValueError, match="CR or LF"):  # the sender's header, by Address
        nurture_email(name="Name\r\nBcc: victim@example.com").message()


def test_other_shapes_fall_back_to_the_email_package():
    attached = nurture_email()
    attached.attach("a.txt", "添付", "text/plain")
    with_cc = nurture_email(cc=["cc@example.com"])
    idn = nurture_email(to=["yamada@例え.jp"])
    no_parts = nurture_email()
    no_parts.sender_parts = None  # not built by build_email
    for message in (attached, with_cc, idn, no_parts):
        msg = message.message(policy=email.policy.SMTP)
        assert isinstance(msg, email.message.EmailMessage)
        assert decoded(msg.as_bytes(), "From").startswith(LONG_NAME)
    assert b"xn--" in idn.message(policy=email.policy.SMTP).as_bytes()


def test_the_stand_in_message_reads_like_the_email_packages():
    msg = nurture_email().message()  # policy.default: the console and file backends
    assert isinstance(msg, mime.SerialisedMessage)
    assert b"\r\n" not in msg.as_bytes()
    assert str(msg) == msg.as_bytes().decode("ascii")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Message-ID" in msg
    assert msg.get_content_type() == "multipart/alternative"


def test_aiosmtpd_receives_the_japanese_intact(smtp):
    message = nurture_email()
    assert mail.mailers.default.send_messages([message]) == 1
    [envelope] = smtp.inbox.envelopes
    raw = envelope.original_content
    assert_wire_correct(raw)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == LONG_SUBJECT
    assert decoded(raw, "From") == f"{LONG_NAME} <news@sender.example.com>"
    assert envelope.mail_from == "news@sender.example.com"
    assert envelope.rcpt_tos == ["taro.yamada@example.co.jp"]
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    assert text.replace("\r\n", "\n") == "山田様\n\n来月のセミナーのご案内です。\n"
