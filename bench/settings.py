"""Settings of the benchmark server: the app's own settings plus the bench-only URLs.

Everything else (production profile, database, cache) comes from the environment that
bench.api_stack sets for the server process, exactly as for a deployed app.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

# The benchmark serves no static files and runs no collectstatic; without a manifest
# the production storage would turn any error page (which links the CSS) into a
# second error and hide the first one.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
