"""Which language a page is in: Japanese unless the person chose otherwise."""

from django.conf import settings
from django.http import HttpRequest
from django.middleware.locale import LocaleMiddleware
from django.utils import translation


class LanguageMiddleware(LocaleMiddleware):
    """The language cookie (set by the switch at /i18n/setlang/), else the user's saved
    language, else LANGUAGE_CODE (Japanese).

    The browser's Accept-Language is ignored on purpose: staff of a Japanese company
    whose browser says English still work in Japanese until they switch. API clients
    (/api/) are programs that ask for a language explicitly, so they keep it. Placed
    after AuthenticationMiddleware so it can read the user's preference.
    """

    def process_request(self, request: HttpRequest) -> None:
        translation.activate(preferred_language(request))
        request.LANGUAGE_CODE = translation.get_language()


def preferred_language(request: HttpRequest) -> str:
    if request.path_info.startswith("/api/"):
        return translation.get_language_from_request(request)
    supported = {code for code, _name in settings.LANGUAGES}
    cookie = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
    if cookie in supported:
        return cookie
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.language in supported:
        return user.language
    return settings.LANGUAGE_CODE
