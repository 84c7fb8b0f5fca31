"""The leads list's "enrol in a sequence" bulk action. Leads may not import campaigns:
the list asks the hook `leads.list_bulk_actions` for the controls of higher apps, and
this module answers with its own (the tenant's active sequences and a button posting
the list's selection here). Like campaigns.views.bulk_add: the ticked leads, or every
lead matching the list's filter; the enrolment rules are the services'
(campaigns.nurture.services.enrol_leads: live once, re-enrolment only where the
sequence allows it; consent is checked at each mail, so a lead without it is enrolled
and leaves at its first mail — the message says how many that is).
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from accounts.services import Origin
from accounts.web import error_messages, tenant_view
from campaigns.models import Sequence
from campaigns.nurture import services
from campaigns.services import CAMPAIGN_WRITE_ROLES
from leads.models import ConsentStatus, Lead, Suppression
from leads.views.lists import back_to_list, bulk_lead_ids, chunks

#: Sequences offered in the list's menu (the newest active ones).
MENU_SIZE = 200


def list_bulk_actions(*, request: HttpRequest) -> str:
    """Hook `leads.list_bulk_actions`: the "enrol in sequence" control of the leads
    list, for those who may enrol and when there is an active sequence."""
    if request.tenant_access.role not in CAMPAIGN_WRITE_ROLES:
        return ""
    sequences = list(
        Sequence.objects.filter(status=Sequence.Status.ACTIVE)
        .order_by("-created_at", "-id")
        .values_list("id", "name")[:MENU_SIZE]
    )
    if not sequences:
        return ""
    return render_to_string(
        "campaigns/nurture/_bulk_enrol.html", {"sequences": sequences}, request=request
    )


def _not_mailed(lead_ids: list[int]) -> int:
    """How many of these leads no mail of a sequence would reach now (no marketing
    consent, no address, or a suppressed one): sending.may_receive_marketing's rule,
    counted in one query."""
    suppressed = Suppression.objects.filter(email=OuterRef("email"))
    return (
        Lead.objects.filter(pk__in=lead_ids)
        .filter(~Q(email_consent=ConsentStatus.GRANTED) | Q(email="") | Q(Exists(suppressed)))
        .count()
    )


@tenant_view(roles=CAMPAIGN_WRITE_ROLES)
@require_POST
def bulk_enrol(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("sequence", "")
    sequence = (
        Sequence.objects.filter(pk=int(raw), status=Sequence.Status.ACTIVE).first()
        if raw.isdigit()
        else None
    )
    ids = bulk_lead_ids(request)
    if sequence is None:
        messages.error(request, _("Choose an active sequence."))
        return back_to_list(request)
    if not ids:
        messages.error(request, _("Select at least one lead."))
        return back_to_list(request)
    enrolled: list[int] = []
    not_mailed = 0
    try:
        with transaction.atomic():  # all chunks or none
            for chunk in chunks(ids):
                done = services.enrol_leads(
                    tenant_id=request.tenant.id,
                    sequence_id=sequence.pk,
                    lead_ids=chunk,
                    origin=Origin.from_request(request),
                )
                enrolled += done
                not_mailed += _not_mailed(done) if done else 0
    except (ValidationError, PermissionDenied) as exc:
        for message in error_messages(exc):
            messages.error(request, message)
        return back_to_list(request)
    messages.success(
        request,
        ngettext(
            "%(n)d lead enrolled in %(sequence)s.",
            "%(n)d leads enrolled in %(sequence)s.",
            len(enrolled),
        )
        % {"n": len(enrolled), "sequence": sequence.name},
    )
    skipped = len(ids) - len(enrolled)
    if skipped:
        messages.warning(
            request,
            ngettext(
                "%(n)d lead was left out: already in the sequence, or finished it "
                "and re-enrolment is off.",
                "%(n)d leads were left out: already in the sequence, or finished it "
                "and re-enrolment is off.",
                skipped,
            )
            % {"n": skipped},
        )
    if not_mailed:
        messages.warning(
            request,
            ngettext(
                "%(n)d enrolled lead cannot be mailed now (no marketing consent, or the "
                "address is suppressed): it leaves the sequence at its first mail.",
                "%(n)d enrolled leads cannot be mailed now (no marketing consent, or the "
                "address is suppressed): they leave the sequence at their first mail.",
                not_mailed,
            )
            % {"n": not_mailed},
        )
    return back_to_list(request)
