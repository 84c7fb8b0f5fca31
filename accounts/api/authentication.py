"""API-key authentication: `Authorization: Api-Key ryo_<prefix>_<secret>`."""

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import APIKey
from accounts.services import api_key_authenticate

KEYWORD = "Api-Key"


class APIKeyUser(AnonymousUser):
    """The request user for an API-key call: authenticated as the key, not as a person."""

    def __init__(self, api_key: APIKey) -> None:
        self.api_key = api_key

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class APIKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[APIKeyUser, APIKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, raw_key = header.partition(" ")
        if keyword != KEYWORD:
            return None
        if not raw_key.strip():
            raise exceptions.AuthenticationFailed("The Api-Key header has no key.")
        api_key = api_key_authenticate(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return APIKeyUser(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class APIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.APIKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key ryo_<prefix>_<secret>`",
        }
