"""Public nurture endpoints (no login): the unsubscribe link of every mail, the open
pixel and the click redirect.

GET shows a page with one button (a link scanner that follows links must not
unsubscribe anyone); POST unsubscribes, whether from that button or from a mail
client's RFC 8058 one-click POST (body `List-Unsubscribe=One-Click`, no cookie, no
CSRF token: the signed token is the credential). A tampered token is a 400.
"""

import base64

from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from campaigns.nurture import tracking
from campaigns.nurture.sending import BadToken, unsubscribe_token_read
from campaigns.nurture.services import lead_unsubscribe, mail_event_record


def _message(request, message: str, status: int = 200):
    return render(
        request, "campaigns/nurture/public_message.html", {"message": message}, status=status
    )


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    try:
        ref = unsubscribe_token_read(token)
    except BadToken:
        return _message(request, _("This unsubscribe link is not valid."), status=400)
    if request.method == "GET":
        return render(request, "campaigns/nurture/unsubscribe.html", {"token": token})
    lead_unsubscribe(tenant_id=ref.tenant_id, lead_id=ref.lead_id, message_id=ref.message_id)
    return _message(
        request, _("You have been unsubscribed. You will receive no more of these emails.")
    )


PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _bad_tracking_link(request):
    return _message(request, _("This link is not valid."), status=400)


@require_http_methods(["GET", "HEAD"])
def opened(request, token: str):
    try:
        tenant_id, lead_id, message_id = tracking.open_token_read(token)
    except tracking.BadToken:
        return _bad_tracking_link(request)
    mail_event_record(tenant_id=tenant_id, lead_id=lead_id, message_id=message_id, kind="opened")
    response = HttpResponse(PIXEL, content_type="image/gif")
    response["Cache-Control"] = "no-store, private"
    return response


@require_http_methods(["GET", "HEAD"])
def clicked(request, token: str):
    try:
        tenant_id, lead_id, message_id, url = tracking.click_token_read(token)
    except tracking.BadToken:
        return _bad_tracking_link(request)
    mail_event_record(
        tenant_id=tenant_id, lead_id=lead_id, message_id=message_id, kind="clicked", url=url
    )
    return HttpResponseRedirect(url)
