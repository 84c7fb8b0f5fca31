from rest_framework.throttling import SimpleRateThrottle


class PerCallerRateThrottle(SimpleRateThrottle):
    """One budget per API key (or per user for session calls, per IP when anonymous)."""

    scope = "caller"

    def get_cache_key(self, request, view) -> str:
        api_key = getattr(request, "auth", None)
        if api_key is not None and hasattr(api_key, "prefix"):
            ident = f"key:{api_key.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
