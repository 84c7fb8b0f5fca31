"""Baseline views for the API benchmark: the same rows and JSON as the members API,
without the stack (no authentication, no throttle, no tenant resolution, no row-level
security, no DRF). The tenant id comes straight from the query string.

- `members` and `write` are the baseline: plain Django views running the *same ORM
  queries* as the API (selectors.membership_list, the service's save and audit row)
  through the plain `_base_manager` as the connecting user, who owns the tables, so
  no policy applies; they filter on tenant_id themselves.
- `members_sql` is the floor: one hand-written SQL statement, no ORM.
- `members_rls` runs the baseline query inside tenant_scope(), i.e. with the app role
  and RLS, to split the stack's cost into "tenant scope + RLS" and the rest.

Mounted only by bench.urls; never part of the app.
"""

import json

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import AuditLog, Membership, Role
from accounts.tenancy import tenant_scope


def _iso(value) -> str:
    # The same text DRF's DateTimeField gives: local time zone, ISO 8601.
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _member(row: tuple) -> dict:
    member_id, role, created_at, user_id, email, full_name = row
    return {
        "id": member_id,
        "user": {"id": user_id, "email": email, "full_name": full_name},
        "role": role,
        "created_at": _iso(created_at),
    }


def _page(request: HttpRequest, members: list[dict], page_size: int) -> JsonResponse:
    # The API's cursor page: one row more than the page tells whether there is a next one.
    more = len(members) > page_size
    next_url = request.build_absolute_uri() + "&cursor=bench" if more else None
    return JsonResponse({"next": next_url, "previous": None, "results": members[:page_size]})


def _tenant_and_size(request: HttpRequest) -> tuple[int, int]:
    return int(request.GET["tenant"]), min(int(request.GET.get("page_size", 50)), 500)


def _orm_members(queryset, page_size: int) -> list[dict]:
    rows = queryset.select_related("user").order_by("-created_at", "-id")[: page_size + 1]
    return [
        _member((m.id, m.role, m.created_at, m.user.id, m.user.email, m.user.full_name))
        for m in rows
    ]


@require_GET
def members(request: HttpRequest) -> HttpResponse:
    try:
        tenant_id, page_size = _tenant_and_size(request)
    except (KeyError, ValueError):
        return HttpResponseBadRequest()
    queryset = Membership._base_manager.filter(tenant_id=tenant_id)
    return _page(request, _orm_members(queryset, page_size), page_size)


@require_GET
def members_rls(request: HttpRequest) -> HttpResponse:
    try:
        tenant_id, page_size = _tenant_and_size(request)
    except (KeyError, ValueError):
        return HttpResponseBadRequest()
    with tenant_scope(tenant_id):
        members = _orm_members(Membership.objects.all(), page_size)
    return _page(request, members, page_size)


@require_GET
def members_sql(request: HttpRequest) -> HttpResponse:
    try:
        tenant_id, page_size = _tenant_and_size(request)
    except (KeyError, ValueError):
        return HttpResponseBadRequest()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.id, m.role, m.created_at, u.id, u.email, u.full_name"
            " FROM accounts_membership m JOIN accounts_user u ON u.id = m.user_id"
            " WHERE m.tenant_id = %s ORDER BY m.created_at DESC, m.id DESC LIMIT %s",
            [tenant_id, page_size + 1],
        )
        members = [_member(row) for row in cursor.fetchall()]
    return _page(request, members, page_size)


@csrf_exempt
@require_http_methods(["PATCH"])
def write(request: HttpRequest, member_id: int) -> HttpResponse:
    """Change a member's role and append the audit row, as membership_change_role does,
    with the same ORM calls but none of the stack around them."""
    try:
        tenant_id = int(request.GET["tenant"])
        role = json.loads(request.body)["role"]
    except (KeyError, ValueError, TypeError):
        return HttpResponseBadRequest()
    if role not in Role.values or role == Role.OWNER:
        return HttpResponseBadRequest()
    with transaction.atomic():
        membership = (
            Membership._base_manager.select_related("user")
            .filter(tenant_id=tenant_id, pk=member_id)
            .first()
        )
        if membership is None:
            return JsonResponse({"error": {"code": "not_found"}}, status=404)
        previous, membership.role = membership.role, role
        membership.save(update_fields=["role"])
        AuditLog(
            tenant_id=tenant_id,
            action="membership.role_changed",
            target_type=membership._meta.label_lower,
            target_id=str(membership.pk),
            target_repr=str(membership)[:200],
            metadata={"user": membership.user.email, "from": previous, "to": role},
            ip_address=request.META.get("REMOTE_ADDR") or None,
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
        ).save()
    return JsonResponse(
        _member(
            (
                membership.id,
                membership.role,
                membership.created_at,
                membership.user.id,
                membership.user.email,
                membership.user.full_name,
            )
        )
    )
