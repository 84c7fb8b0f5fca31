"""Settings of the benchmark server: the app's own settings plus the bench-only URLs.

Everything else (production profile, database, cache) comes from the environment that
bench.api_stack sets for the server process, exactly as for a deployed app.
"""

import os

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

# The benchmark serves no static files and runs no collectstatic; without a manifest
# the production storage would turn any error page (which links the CSS) into a
# second error and hide the first one.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# The capture endpoints' rate limits (leads.capture.spam), settable per benchmark run:
# a load generator on one address would hit the per-IP limit at once ("" turns it off).
for _name in (
    "LEADS_CAPTURE_RATE_PER_IP",
    "LEADS_CAPTURE_RATE_PER_FORM",
    "LEADS_TRACK_RATE_PER_IP",
):
    if _name in os.environ:
        globals()[_name] = os.environ[_name]
