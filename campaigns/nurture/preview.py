"""Preview and test send of an email template: the template (saved or as being
edited) rendered for a real lead by the same merge-field renderer and with the same
compliance footer as the dispatcher's mails (campaigns.nurture.sending).

A test mail goes to an address the user types, not to the lead, so its unsubscribe
link must not work for the lead: it carries no token (the link answers "not valid")
and the mail has no tracking. Nothing is written: no outgoing-message row, no
activity.
"""

from dataclasses import dataclass, field
from email.headerregistry import Address

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from campaigns.models import SenderIdentity
from campaigns.nurture import render
from campaigns.nurture.sending import _footer_html, _footer_text

TEMPLATE_PARTS = ("subject", "html", "text")


@dataclass(slots=True)
class Preview:
    subject: str = ""
    html: str = ""
    text: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)  # part -> messages


def inert_unsubscribe_url() -> str:
    """Where a preview's or test mail's unsubscribe link points: the unsubscribe page
    with no valid token, which unsubscribes nobody."""
    return settings.SITE_URL.rstrip("/") + reverse("nurture:unsubscribe", args=["test"])


def preview_render(
    *, subject: str, html: str, text: str, lead, tenant, sender: SenderIdentity | None
) -> Preview:
    """The mail `lead` would get from this template; a part that does not parse gets its
    error instead (the others still render)."""
    url = inert_unsubscribe_url()
    context = render.merge_context(lead, tenant=tenant, sender=sender, links={"unsubscribe": url})
    preview = Preview()
    for part, source in (("subject", subject), ("html", html), ("text", text)):
        try:
            value = render.render(source, context, html=part == "html")
        except render.TemplateSyntaxError as exc:
            preview.errors[part] = [str(exc)]
            continue
        setattr(preview, part, " ".join(value.split())[:255] if part == "subject" else value)
    if sender is not None:
        with translation.override(tenant.language or settings.LANGUAGE_CODE):
            preview.text += _footer_text(sender, url)
            if preview.html:
                preview.html += _footer_html(sender, url)
    return preview


def build_test_email(
    *, preview: Preview, sender: SenderIdentity, to: str, tenant
) -> EmailMultiAlternatives:
    """A rendered preview as a mail to `to`, its subject marked as a test."""
    with translation.override(tenant.language or settings.LANGUAGE_CODE):
        subject = _("[Test] %(subject)s") % {"subject": preview.subject}
    mail = EmailMultiAlternatives(
        subject=subject[:255],
        body=preview.text,
        from_email=str(Address(display_name=sender.from_name, addr_spec=sender.from_email)),
        to=[to],
        reply_to=[sender.reply_to] if sender.reply_to else None,
    )
    if preview.html:
        mail.attach_alternative(preview.html, "text/html")
    return mail
