"""Celery tasks of lead capture. Registered with the worker through leads.tasks."""

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from accounts.redis import redis_client
from accounts.tasks import tenant_task
from leads.capture import tokens

SENT_MARKER_TTL = 60 * 60 * 24 * 15  # longer than a confirmation link lives


def _mark_sent_once(submission_id: int) -> bool:
    """True the first time only: a retried or redelivered task does not mail again."""
    key = f"capture:confirmation-mail:{submission_id}"
    client = redis_client()
    if client is not None:
        return bool(client.set(key, 1, nx=True, ex=SENT_MARKER_TTL))
    return cache.add(key, 1, SENT_MARKER_TTL)


def _forget_sent(submission_id: int) -> None:
    key = f"capture:confirmation-mail:{submission_id}"
    client = redis_client()
    if client is not None:
        client.delete(key)
    else:
        cache.delete(key)


@tenant_task(
    name="leads.capture.send_form_confirmation",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def send_form_confirmation(tenant_id: int, submission_id: int) -> bool:
    """Mail the double opt-in link for one submission, in the tenant's language.
    Sends nothing when the submission is gone or already confirmed, or was mailed."""
    from leads.models import FormSubmission

    submission = (
        FormSubmission.objects.select_related("form", "lead", "tenant")
        .filter(pk=submission_id)
        .first()
    )
    if submission is None or submission.confirmed_at is not None or not submission.lead.email:
        return False
    if not _mark_sent_once(submission_id):
        return False
    token = tokens.confirmation_token(tenant_id=tenant_id, submission_id=submission_id)
    link = settings.SITE_URL.rstrip("/") + reverse("capture:confirm", args=[token])
    tenant = submission.tenant
    with translation.override(tenant.language):
        context = {
            "tenant": tenant,
            "form": submission.form,
            "lead": submission.lead,
            "link": link,
            "valid_days": tokens.CONFIRM_MAX_AGE.days,
        }
        subject = render_to_string("leads/public/email/confirm_subject.txt", context).strip()
        body = render_to_string("leads/public/email/confirm_body.txt", context)
    try:
        send_mail(subject, body, None, [submission.lead.email])
    except OSError:
        _forget_sent(submission_id)  # let the retry send it
        raise
    return True
