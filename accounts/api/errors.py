"""One JSON error format for the whole API:

    {"error": {"code": "not_found", "message": "...", "fields": {"email": ["..."]}}}

`fields` appears on validation errors only, naming each bad field (or `non_field_errors`).
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, transaction
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import set_rollback

from accounts.tenancy import TenantNotSet, current_scope


def _flatten(detail) -> object:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(value) for value in detail]
    return str(detail)


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    body: dict = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, TenantNotSet):
        # A programming error, never the caller's: keep it a 500, with the stack trace.
        return None
    if not isinstance(exc, exceptions.APIException):
        return None

    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        fields = _flatten(detail)
        names = ", ".join(fields)
        body = error_body("invalid", f"Invalid input: {names}.", fields)
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        body = error_body(code, str(exc.detail))

    # The request's tenant transaction must not commit half of a failed write. Only the
    # tenant scope the view opened is marked: outside one, services' own atomic blocks
    # have rolled back already, and an enclosing transaction (a test's, or the caller's)
    # is not ours to doom.
    if current_scope() is not None and connection.in_atomic_block:
        transaction.set_rollback(True)
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


def not_found_response() -> Response:
    return Response(error_body("not_found", "Not found."), status=status.HTTP_404_NOT_FOUND)
