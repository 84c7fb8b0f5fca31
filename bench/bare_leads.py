"""Baseline views of the lead benchmarks: the same writes without the stack (no API key,
no throttle, no tenant resolution or scope, no row-level security, no DRF, no
validation). The tenant id comes from the query string. Mounted only by bench.urls.

- `activities_batch` (bench.activity_ingest): the batch body as the API takes it;
  emails resolved to lead ids in one query, every item written by one INSERT from the
  JSON document (the same statement shape as leads.services.activities). The floor of
  a Django view writing 1,000 activities.
- `form_insert` (bench.form_submit): a submission's JSON body stored as one row
  (a FormSubmission of the lead `?lead=`, through the ORM), answered with a small
  JSON object: "a bare Django view inserting one row".
"""

import json

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from leads.models import FormSubmission


def _tenant(request: HttpRequest) -> int:
    return int(request.GET["tenant"])


@csrf_exempt
@require_POST
def activities_batch(request: HttpRequest) -> HttpResponse:
    try:
        tenant_id = _tenant(request)
        items = json.loads(request.body)["items"]
    except (KeyError, ValueError, TypeError):
        return HttpResponseBadRequest()
    emails = [item["email"] for item in items if "email" in item]
    with transaction.atomic(), connection.cursor() as cursor:
        by_email: dict[str, int] = {}
        if emails:
            cursor.execute(
                "SELECT email, id FROM leads_lead WHERE tenant_id = %s AND email = ANY(%s)",
                [tenant_id, emails],
            )
            by_email = dict(cursor.fetchall())
        batch = json.dumps(
            [
                {
                    "l": item.get("lead_id") or by_email.get(item.get("email")),
                    "t": item["type"],
                    "o": item.get("occurred_at"),
                    "c": item.get("campaign_id"),
                    "p": json.dumps(item.get("properties") or {}, ensure_ascii=False),
                }
                for item in items
            ],
            ensure_ascii=False,
        )
        cursor.execute(
            "INSERT INTO leads_activity"
            " (tenant_id, lead_id, type, occurred_at, campaign_id, channel, properties,"
            " created_at)"
            " SELECT %s, b.l, b.t, b.o, b.c, 'api', b.p::jsonb, %s"
            " FROM jsonb_to_recordset(%s::jsonb)"
            " AS b(l bigint, t text, o timestamptz, c bigint, p text)"
            " RETURNING id",
            [tenant_id, timezone.now(), batch],
        )
        ids = [row[0] for row in cursor.fetchall()]
    return JsonResponse({"created": len(ids), "errors": 0, "ids": ids})


@csrf_exempt
@require_POST
def form_insert(request: HttpRequest, form_id: int) -> HttpResponse:
    try:
        tenant_id = _tenant(request)
        lead_id = int(request.GET["lead"])
        data = json.loads(request.body)
    except (KeyError, ValueError, TypeError):
        return HttpResponseBadRequest()
    if not isinstance(data, dict):
        return HttpResponseBadRequest()
    submission = FormSubmission._base_manager.create(
        tenant_id=tenant_id,
        form_id=form_id,
        lead_id=lead_id,
        data=data,
        ip_address=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
        page_url=str(data.get("page_url", ""))[:1000],
    )
    return JsonResponse({"ok": True, "id": submission.id})
