"""The public side of lead capture: no login, identified by an unguessable form key or a
signed token, reached cross-site from tenants' pages.

* /f/<key>/                          the hosted form page (GET; POST re-renders with errors)
* /f/<key>/thanks/                   the thank-you page
* /api/public/forms/<key>/submit/    where embedded forms post: form-encoded from a plain
                                     <form> (answers with pages, like the hosted one) or
                                     JSON from our script (answers JSON, CORS for any origin)
* /api/public/track/                 page views (JSON, CORS for any origin, no cookies)
* /f/confirm/<token>/                double opt-in: GET shows a button, POST confirms (a
                                     mail scanner following the link confirms nothing)

Each request finds the form's tenant through the named cross-tenant escape, then runs
inside that tenant's scope. CSRF tokens cannot work cross-site and there is no session
to protect, so these views are csrf_exempt; the honeypot and rate limits guard them.
"""

import json
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.api.errors import error_body
from accounts.models import Tenant
from accounts.services import Origin
from accounts.tenancy import tenant_scope
from leads.capture import spam, spec, tokens
from leads.capture.services import (
    ConfirmationInvalid,
    FormChanged,
    SubmissionContext,
    capture_form_get_active,
    capture_form_remembered,
    form_submission_confirm,
    form_submission_create,
    tenant_for_form_key,
)
from leads.capture.spec import CONSENT_FIELD, HONEYPOT_FIELD
from leads.capture.tracking import (
    MAX_URL,
    clean_utm,
    page_view_record,
    utm_from_url,
    visitor_key_valid,
)
from leads.models import CaptureForm, Prefecture

LANGUAGES = {code for code, _name in settings.LANGUAGES}


# --- Helpers ---------------------------------------------------------------------------------


def cors(view: Callable) -> Callable:
    """Any origin may call the view, without credentials; answers preflights itself."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "OPTIONS":
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response["Access-Control-Allow-Headers"] = "Content-Type, Accept"
            response["Access-Control-Max-Age"] = "86400"
        else:
            response = view(request, *args, **kwargs)
        response["Access-Control-Allow-Origin"] = "*"
        return response

    return wrapped


def absolute(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def script_url() -> str:
    url = static("leads/ryorin.js")
    return url if url.startswith(("http://", "https://")) else absolute(url)


def _language(request: HttpRequest, form: CaptureForm) -> str:
    """The form's tenant speaks its language; `?lang=en` picks another one."""
    asked = request.GET.get("lang") or request.POST.get("lang") or ""
    return asked if asked in LANGUAGES else form.tenant.language


def _other(language: str) -> str:
    """The language the hosted page's switch offers."""
    return "en" if language == "ja" else "ja"


def _text(data: Mapping, name: str, limit: int = MAX_URL) -> str:
    value = data.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _json_error(
    status: int, code: str, message: str, fields: dict | None = None, **headers: str
) -> JsonResponse:
    response = JsonResponse(error_body(code, message, fields), status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def _form_or_404(key: str) -> CaptureForm:
    tenant_id = tenant_for_form_key(key)
    if tenant_id is None:
        raise Http404
    with tenant_scope(tenant_id):
        form = capture_form_get_active(key)
    if form is None:
        raise Http404
    return form


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += [(k, v) for k, v in params.items() if v]
    return urlunsplit(parts._replace(query=urlencode(query)))


# --- Rendering the form ----------------------------------------------------------------------


def _choices(spec_field: dict) -> list[tuple[str, str]]:
    if spec_field["maps_to"] == "lead.prefecture":
        labels = dict(Prefecture.choices)
        return [(value, str(labels.get(value, value))) for value in spec_field["choices"]]
    return [(value, value) for value in spec_field["choices"]]


def form_context(
    form: CaptureForm,
    *,
    action: str,
    values: Mapping | None = None,
    errors: dict[str, list[str]] | None = None,
    hidden: dict[str, str] | None = None,
) -> dict:
    """What the form template needs; shared by the hosted page and the embed snippet."""
    values = values or {}
    errors = errors or {}
    fields = []
    for spec_field in form.fields:
        name = spec_field["name"]
        value = values.get(name, "")
        fields.append(
            {
                **spec_field,
                "id": f"ryorin-{form.key}-{name}",
                "value": value if isinstance(value, str) else "",
                "checked": spec.is_true(value) if spec_field["type"] == "checkbox" else False,
                "options": _choices(spec_field) if spec_field["type"] == "select" else [],
                "errors": errors.get(name, []),
            }
        )
    return {
        "form": form,
        "fields": fields,
        "action": action,
        "honeypot": HONEYPOT_FIELD,
        "consent_field": CONSENT_FIELD,
        "consent_checked": spec.is_true(values.get(CONSENT_FIELD)),
        "consent_errors": errors.get(CONSENT_FIELD, []),
        "form_errors": errors.get("non_field_errors", []),
        "hidden": hidden or {},
    }


def embed_snippet(form: CaptureForm) -> str:
    """The HTML a tenant pastes into its page: a plain form, plus our small script."""
    from django.template.loader import render_to_string

    with translation.override(form.tenant.language):
        context = form_context(form, action=absolute(reverse("capture:submit", args=[form.key])))
        context["script_url"] = script_url()
        return render_to_string("leads/public/embed.html", context)


def public_url(form: CaptureForm) -> str:
    return absolute(reverse("capture:form", args=[form.key]))


# --- Submitting --------------------------------------------------------------------------------


def _submission_context(
    request: HttpRequest, data: Mapping, default_page: str
) -> SubmissionContext:
    page_url = _text(data, "page_url") or default_page
    utm = {**utm_from_url(page_url), **clean_utm(data)}
    return SubmissionContext(
        ip_address=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
        page_url=page_url,
        referrer=_text(data, "referrer"),
        utm=utm,
        visitor_key=_text(data, "visitor_key", 64),
    )


def _thanks_url(form: CaptureForm, *, token: str, pending: bool, language: str) -> str:
    if form.redirect_url:
        # The tenant's own page: our script there picks the token up (?rt=) and ties
        # the visitor's later page views to the lead.
        return _with_query(form.redirect_url, rt=token)
    return _with_query(
        reverse("capture:thanks", args=[form.key]),
        confirm="1" if pending else "",
        lang=language if language != form.tenant.language else "",
    )


def _success_json(form: CaptureForm, *, token: str, pending: bool) -> JsonResponse:
    return JsonResponse(
        {
            "ok": True,
            "message": form.thank_you_message or _("Thank you. We have received your submission."),
            "redirect_url": _with_query(form.redirect_url, rt=token) if form.redirect_url else "",
            "token": token,
            "confirmation_pending": pending,
        }
    )


def _submit(
    request: HttpRequest, key: str, data: Mapping, *, wants_json: bool, default_page: str
) -> HttpResponse:
    tenant_id = tenant_for_form_key(key)
    if tenant_id is None:
        raise Http404
    limited = spam.submission_limited(request, key)
    trap = spam.honeypot_filled(data)
    context = _submission_context(request, data, default_page)
    result = None
    errors: dict[str, list[str]] = {}
    # A submission first uses the form as this process remembers it; when that fails in
    # any way (the form changed since, or the submission is refused) it runs again on
    # the form as stored, so nothing is ever decided on a stale copy. Spam and throttled
    # requests store nothing and read the stored form at once.
    fresh = limited is not None or trap
    for _attempt in range(3):
        changed = False
        # One transaction for the form lookup and the submission. Nothing in it renders:
        # a failed write leaves the transaction unusable until the scope rolls it back.
        with tenant_scope(tenant_id):
            form = None if fresh else capture_form_remembered(key)
            fresh = form is None
            if fresh:
                form = capture_form_get_active(key, remember=True)
            if form is None:
                raise Http404
            language = _language(request, form)
            if limited is None and not trap:
                with translation.override(language):
                    try:
                        # The writes join this transaction (no savepoint of their own)...
                        result = form_submission_create(
                            form=form, data=data, context=context, savepoint=False
                        )
                    except FormChanged:
                        transaction.set_rollback(True)
                        changed = True
                    except ValidationError as exc:
                        # ...so a refused submission rolls all of it back here.
                        transaction.set_rollback(True)
                        changed = not fresh
                        errors = exc.message_dict
        if not changed:
            break
        errors, fresh = {}, True
    else:
        raise Http404  # edited again and again while we tried: as good as gone

    with translation.override(language):
        if limited is not None:
            message = (
                _("Too many submissions from your network. Please try again in %(s)d seconds.")
                if limited.scope == "ip"
                else _(
                    "This form is receiving too many submissions. "
                    "Please try again in %(s)d seconds."
                )
            ) % {"s": limited.retry_after}
            if wants_json:
                return _json_error(
                    429, "throttled", message, **{"Retry-After": str(limited.retry_after)}
                )
            response = render(
                request, "leads/public/message.html", {"form": form, "message": message}, status=429
            )
            response["Retry-After"] = str(limited.retry_after)
            return response
        if trap:
            # Looks like success to the bot; nothing is stored.
            if wants_json:
                return _success_json(form, token="", pending=False)
            return redirect(_thanks_url(form, token="", pending=False, language=language))
        if errors:
            if wants_json:
                return _json_error(
                    400,
                    "invalid",
                    _("Please check these fields: %(fields)s.") % {"fields": ", ".join(errors)},
                    errors,
                )
            page = form_context(
                form,
                action=reverse("capture:form", args=[key]),
                values=data,
                errors=errors,
                hidden=_hidden(context, language, form),
            )
            page["switch_url"] = _with_query(
                reverse("capture:form", args=[key]), lang=_other(language)
            )
            return render(request, "leads/public/form.html", page, status=400)
        if wants_json:
            return _success_json(
                form, token=result.tracking_token, pending=result.confirmation_pending
            )
        return redirect(
            _thanks_url(
                form,
                token=result.tracking_token,
                pending=result.confirmation_pending,
                language=language,
            )
        )


def _hidden(context: SubmissionContext, language: str, form: CaptureForm) -> dict[str, str]:
    hidden = {"page_url": context.page_url, "referrer": context.referrer, **context.utm}
    if context.visitor_key:
        hidden["visitor_key"] = context.visitor_key
    if language != form.tenant.language:
        hidden["lang"] = language
    return hidden


@csrf_exempt
@require_http_methods(["GET", "POST"])
def hosted_form(request: HttpRequest, key: str) -> HttpResponse:
    """The form on a page of ours, at the public URL the tenant shares."""
    if request.method == "POST":
        return _submit(
            request,
            key,
            request.POST,
            wants_json=False,
            default_page=request.build_absolute_uri(request.path),
        )
    form = _form_or_404(key)
    language = _language(request, form)
    with translation.override(language):
        page_url = request.build_absolute_uri()
        context = SubmissionContext(
            page_url=page_url[:MAX_URL],
            referrer=request.META.get("HTTP_REFERER", "")[:MAX_URL],
            utm={**utm_from_url(page_url)},
        )
        page = form_context(
            form,
            action=reverse("capture:form", args=[key]),
            hidden=_hidden(context, language, form),
        )
        page["switch_url"] = _with_query(request.get_full_path(), lang=_other(language))
        return render(request, "leads/public/form.html", page)


@csrf_exempt
@cors
@require_http_methods(["POST", "OPTIONS"])
def submit(request: HttpRequest, key: str) -> HttpResponse:
    """Where embedded forms post. JSON in, JSON out; form-encoded in, pages out."""
    is_json = request.content_type == "application/json"
    wants_json = is_json or "application/json" in request.headers.get("Accept", "")
    if is_json:
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _json_error(400, "invalid", _("The body must be a JSON object."))
    else:
        data = request.POST
    return _submit(
        request,
        key,
        data,
        wants_json=wants_json,
        default_page=request.META.get("HTTP_REFERER", "")[:MAX_URL],
    )


@require_http_methods(["GET"])
def thanks(request: HttpRequest, key: str) -> HttpResponse:
    form = _form_or_404(key)
    with translation.override(_language(request, form)):
        return render(
            request,
            "leads/public/thanks.html",
            {"form": form, "confirmation_pending": request.GET.get("confirm") == "1"},
        )


@csrf_exempt
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """Double opt-in. The language is the form's tenant's; a bad link answers 400."""
    try:
        ref = tokens.read_confirmation_token(token)
    except tokens.TokenExpired:
        return _link_problem(request, _("This confirmation link has expired."))
    except tokens.BadToken:
        return _link_problem(request, _("This confirmation link is not valid."))
    tenant = Tenant.objects.filter(pk=ref.tenant_id, is_active=True).first()
    if tenant is None:
        return _link_problem(request, _("This confirmation link is not valid."))
    with translation.override(tenant.language):
        if request.method == "GET":
            return render(request, "leads/public/confirm.html", {"tenant": tenant, "done": False})
        try:
            form_submission_confirm(token=token, origin=Origin.from_request(request))
        except ConfirmationInvalid:
            return _link_problem(request, _("This confirmation link is not valid."))
        return render(request, "leads/public/confirm.html", {"tenant": tenant, "done": True})


def _link_problem(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "leads/public/message.html", {"message": message}, status=400)


# --- Tracking ------------------------------------------------------------------------------------


@csrf_exempt
@cors
@require_http_methods(["POST", "OPTIONS"])
def track(request: HttpRequest) -> HttpResponse:
    """A page view: {"key", "url", "referrer", "title", "utm", "visitor", "token"}.
    JSON whatever the content type says (navigator.sendBeacon sends text/plain, which
    needs no preflight). 204 when recorded; nothing is stored on any error."""
    limited = spam.tracking_limited(request)
    if limited is not None:
        return _json_error(
            429,
            "throttled",
            f"Too many tracking calls from this address; retry in {limited.retry_after} s.",
            **{"Retry-After": str(limited.retry_after)},
        )
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _json_error(400, "invalid", "The body must be a JSON object.")

    lead_ref = None
    token = body.get("token") or ""
    if token:
        try:
            lead_ref = tokens.read_tracking_token(token)
        except tokens.BadToken:
            return _json_error(
                400,
                "invalid_token",
                "The tracking token is not valid (altered, or expired); nothing was recorded.",
                {"token": ["Not a valid tracking token."]},
            )
    tenant_id = None
    key = body.get("key") or ""
    if key:
        tenant_id = tenant_for_form_key(key) if isinstance(key, str) else None
        if tenant_id is None:
            return _json_error(404, "not_found", "No form has this key.")
    if lead_ref is not None:
        if tenant_id is not None and tenant_id != lead_ref.tenant_id:
            return _json_error(
                400,
                "invalid_token",
                "The tracking token belongs to another site; nothing was recorded.",
                {"token": ["Not a token of this site."]},
            )
        tenant_id = lead_ref.tenant_id
    if tenant_id is None:
        return _json_error(400, "invalid", "Send the form key (key) or a tracking token (token).")

    fields: dict[str, list[str]] = {}
    url = body.get("url")
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        fields["url"] = ["The page's http(s) address is required."]
    elif len(url) > MAX_URL:
        fields["url"] = [f"At most {MAX_URL} characters."]
    visitor = body.get("visitor") or ""
    if visitor and not visitor_key_valid(visitor):
        fields["visitor"] = ["8 to 64 characters of A–Z, a–z, 0–9, _ and -."]
    if not visitor and lead_ref is None:
        fields["visitor"] = ["A visitor key is required when there is no token."]
    if fields:
        return _json_error(400, "invalid", f"Invalid input: {', '.join(fields)}.", fields)

    with tenant_scope(tenant_id):
        page_view_record(
            tenant_id=tenant_id,
            url=url,
            referrer=_text(body, "referrer"),
            title=_text(body, "title", 300),
            utm=clean_utm(body.get("utm")),
            visitor_key=visitor,
            lead_id=lead_ref.lead_id if lead_ref else None,
        )
    return HttpResponse(status=204)
