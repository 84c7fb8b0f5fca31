"""Building a nurture mail and the rules of who may receive one.

Every mail carries what Japan's Act on Specified Electronic Mail (特定電子メール法)
asks of marketing mail: the sender's name and postal address and a way to opt out,
in a footer of both bodies; and RFC 8058 one-click unsubscribe headers
(List-Unsubscribe with an https URL + List-Unsubscribe-Post), the URL carrying a
signed token, so unsubscribing needs no login. Non-ASCII subjects and display names
are RFC 2047 encoded words and the UTF-8 bodies base64 when the message is
serialised (campaigns.nurture.mime).
"""

import datetime
import email.policy
import functools
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import make_msgid

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.utils import translation
from django.utils.html import escape, linebreaks
from django.utils.timezone import get_current_timezone
from django.utils.translation import gettext as _

from campaigns.nurture import mime, render
from campaigns.nurture.tracking import token_url, track_html
from leads.models import ConsentStatus, Suppression
from leads.services import email_clean

UNSUBSCRIBE_SALT = "ryorin.nurture.unsubscribe"
MAX_TOKEN_LENGTH = 300


class BadToken(ValueError):
    """Tampered with, truncated, or not a token of this kind."""


@dataclass(frozen=True, slots=True)
class UnsubscribeRef:
    tenant_id: int
    lead_id: int
    message_id: int | None


def unsubscribe_token(*, tenant_id: int, lead_id: int, message_id: int | None = None) -> str:
    """Never expires: a mail's opt-out link must keep working as long as it sits in an
    inbox. It names a lead of one tenant (and the message it came in), signed."""
    return signing.dumps([tenant_id, lead_id, message_id], salt=UNSUBSCRIBE_SALT)


def unsubscribe_token_read(token: str) -> UnsubscribeRef:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise BadToken("missing or malformed token")
    try:
        value = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature as exc:
        raise BadToken("bad signature") from exc
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(part, int) for part in value[:2])
        or not (value[2] is None or isinstance(value[2], int))
    ):
        raise BadToken("not an unsubscribe token")
    return UnsubscribeRef(tenant_id=value[0], lead_id=value[1], message_id=value[2])


def unsubscribe_url(token: str) -> str:
    return token_url("nurture:unsubscribe", token)


def may_receive_marketing(lead, suppressed: set[str] | None = None) -> bool:
    """Marketing mail only to a lead with an address, granted consent, and an address
    not on the tenant's suppression list (unsubscribed, bounced, complained, manual).
    `suppressed`: the batch's suppressed addresses read at once, else one query."""
    address = email_clean(lead.email or "")
    if not address or lead.email_consent != ConsentStatus.GRANTED:
        return False
    if suppressed is None:
        return not Suppression.objects.filter(email=address).exists()
    return address not in suppressed


@functools.lru_cache(maxsize=256)
def _from_header(name: str, addr_spec: str) -> str:
    # The sender of a batch is the same for every mail: format it once.
    return str(Address(display_name=name, addr_spec=addr_spec))


class NurtureEmail(EmailMultiAlternatives):
    """A nurture mail for Django's backends. Backends that serialise it (SMTP,
    console, file) get the bytes of campaigns.nurture.mime, written directly for the
    mail's fixed shape; provider backends (anymail) read the attributes as usual.

    A mail outside that shape falls back to the email package, serialised with header
    lines up to RFC 5322's 998 characters (the body's encoding is chosen as usual):
    the email package would otherwise turn a List-Unsubscribe URL longer than 78
    characters into an RFC 2047 encoded word, which mail clients do not read as a URL."""

    #: (display name, address) of from_email, set with it by build_email.
    sender_parts: tuple[str, str] | None = None

    def _raw(self, policy) -> bytes | None:
        if self.sender_parts is None or self.from_email != _from_header(*self.sender_parts):
            return None
        if self.attachments or self.cc or self.content_subtype != "plain":
            return None
        if self.encoding not in (None, "utf-8") or not isinstance(self.body, str):
            return None
        if len(self.alternatives) > 1:
            return None
        html = None
        if self.alternatives:
            content, mimetype = self.alternatives[0]
            if mimetype != "text/html" or not isinstance(content, str):
                return None
            html = content
        date = None
        if settings.EMAIL_USE_LOCALTIME:
            date = datetime.datetime.now(get_current_timezone())
        return mime.serialise(
            subject=str(self.subject),
            from_name=self.sender_parts[0],
            from_addr=self.sender_parts[1],
            to=self.to,
            reply_to=self.reply_to,
            extra_headers=self.extra_headers,
            text=self.body,
            html=html,
            date=date,
            linesep=policy.linesep,
        )

    def message(self, *, policy=email.policy.default):
        raw = self._raw(policy)
        if raw is not None:
            return mime.SerialisedMessage(raw, policy)
        msg = super().message(policy=policy)
        msg.policy = msg.policy.clone(max_line_length=998)
        return msg


@dataclass(frozen=True, slots=True)
class Built:
    message: NurtureEmail
    message_id: str
    subject: str


def _footer_text(sender, url: str) -> str:
    return "\n\n-- \n" + "\n".join(
        [
            sender.from_name,
            sender.postal_address,
            _("To stop receiving these emails, unsubscribe here: %(url)s") % {"url": url},
        ]
    )


def _footer_html(sender, url: str) -> str:
    link = f'<a href="{escape(url)}">{escape(_("Unsubscribe"))}</a>'
    return (
        '<hr><div style="font-size:12px;color:#666">'
        f"<p>{escape(sender.from_name)}</p>{linebreaks(sender.postal_address)}"
        f"<p>{escape(_('To stop receiving these emails:'))} {link}</p></div>"
    )


def build_email(
    *,
    outgoing,
    lead,
    template,
    sender,
    tenant,
    extra_links: dict | None = None,
    track=True,
    unsubscribe: str | None = None,
) -> Built:
    """The mail of one outgoing-message row: template rendered for the lead, footer,
    one-click unsubscribe headers, a Message-ID of our own (the provider id we keep);
    in the HTML body, tracked links and the open pixel (track=False: a test send).
    A preview or test send (no row: outgoing.id None) passes a harmless `unsubscribe`
    URL: its link must not unsubscribe the lead whose data fills the template."""
    if unsubscribe is None:
        token = unsubscribe_token(tenant_id=tenant.id, lead_id=lead.id, message_id=outgoing.id)
        unsubscribe = unsubscribe_url(token)
    url = unsubscribe
    links = {"unsubscribe": url, **(extra_links or {})}
    context = render.merge_context(lead, tenant=tenant, sender=sender, links=links)
    subject = " ".join(render.render(template.subject, context).split())[:255]
    text = render.render(template.text, context)
    html = render.render(template.html, context, html=True) if template.html else ""
    domain = sender.from_email.rsplit("@", 1)[-1]
    # Deterministic: a mail sent again after a crash carries the same Message-ID, which
    # receiving systems use to drop the duplicate.
    message_id = (
        f"<ryorin.{tenant.id}.{outgoing.id}@{domain}>"
        if outgoing.id is not None
        else make_msgid("ryorin.test", domain=domain)
    )
    with translation.override(tenant.language or settings.LANGUAGE_CODE):
        text += _footer_text(sender, url)
        if html:
            html += _footer_html(sender, url)
    if html and track:
        html = track_html(
            html, tenant_id=tenant.id, lead_id=lead.id, message_id=outgoing.id, skip=url
        )
    mail = NurtureEmail(
        subject=subject,
        body=text,
        from_email=_from_header(sender.from_name, sender.from_email),
        to=[lead.email],
        reply_to=[sender.reply_to] if sender.reply_to else None,
        headers={
            "Message-ID": message_id,
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    mail.sender_parts = (sender.from_name, sender.from_email)
    if outgoing.id is not None:
        # Given to an anymail provider, returned in its bounce/complaint webhooks
        # (campaigns.nurture.provider_webhooks); other backends ignore it.
        mail.metadata = {"ryorin_tenant": str(tenant.id), "ryorin_message": str(outgoing.id)}
    if html:
        mail.attach_alternative(html, "text/html")
    return Built(message=mail, message_id=message_id, subject=subject)
