"""Ryorin settings, driven by environment variables (see README, "Configuration").

RYORIN_ENV selects the profile: "development" (default, safe local defaults),
"test" (used by the test command) or "production" (every secret must come from
the environment and `manage.py check --deploy` passes).
"""

from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _

from config.env import env_bool, env_int, env_list, env_required, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

RYORIN_ENV = env_str("RYORIN_ENV", "development")
PRODUCTION = RYORIN_ENV == "production"
TESTING = RYORIN_ENV == "test"

if PRODUCTION:
    SECRET_KEY = env_required("SECRET_KEY")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS") or [env_required("ALLOWED_HOSTS")]
else:
    SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-key-do-not-use-in-production")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

DEBUG = env_bool("DEBUG", default=not PRODUCTION and not TESTING)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "accounts",
    # The platform admin site (runs every admin view in the unscoped escape).
    "accounts.admin_site.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "anymail",
    "leads",
    "campaigns",
    "pipeline",
    "reporting",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Django's LocaleMiddleware, minus Accept-Language, plus the user's saved language.
    "accounts.middleware.LanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "accounts.context_processors.tenancy",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# DATABASE_URL selects PostgreSQL (postgres://user@host:5432/name); unset means SQLite.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "var" / "ryorin.sqlite3")),
        }
    }
    # Covering indexes' INCLUDE columns are a PostgreSQL speed-up; SQLite (development)
    # builds the index without them, which is all it needs.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Row-level security roles (PostgreSQL). Tenant work runs as DB_APP_ROLE, the named
# cross-tenant escape as DB_PLATFORM_ROLE; neither owns the tables.
DB_APP_ROLE = env_str("DB_APP_ROLE", "ryorin_app")
DB_PLATFORM_ROLE = env_str("DB_PLATFORM_ROLE", "ryorin_platform")

# --- Auth -----------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # Hashing speed only matters to tests; production keeps Django's default hasher.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- I18n -------------------------------------------------------------------------
LANGUAGE_CODE = "ja"
LANGUAGES = [("ja", _("Japanese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Tokyo"
USE_I18N = True
USE_TZ = True

# --- Static files (served by the app through WhiteNoise; no CDN) -----------------
STATIC_URL = "static/"
# collectstatic's target; WhiteNoise serves it in production. Elsewhere the files are
# served straight from the apps' static dirs (no collectstatic step to forget).
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")) if PRODUCTION else None
WHITENOISE_USE_FINDERS = not PRODUCTION
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
MEDIA_ROOT = BASE_DIR / "var" / "media"

# --- Cache (throttling) ---------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "ryorin"),
        }
    }
    # Sessions read from Redis, written through to the database (which keeps them
    # across a Redis restart): one query less on every signed-in request.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Email ------------------------------------------------------------------------
# Django 6.1 mailers. EMAIL_BACKEND picks the backend (SMTP in production, the console
# in development); anymail providers plug in the same way later.
MAILERS = {
    "default": {
        "BACKEND": env_str(
            "EMAIL_BACKEND",
            # Django's SMTP backend with cheap envelope-address parsing (nurture volume).
            "campaigns.nurture.smtp.EmailBackend"
            if PRODUCTION
            else "django.core.mail.backends.console.EmailBackend",
        ),
        "OPTIONS": {},
    }
}
if MAILERS["default"]["BACKEND"].endswith("smtp.EmailBackend"):
    MAILERS["default"]["OPTIONS"] = {
        "host": env_str("EMAIL_HOST", "localhost"),
        "port": env_int("EMAIL_PORT", 25),
        "username": env_str("EMAIL_HOST_USER", ""),
        "password": env_str("EMAIL_HOST_PASSWORD", ""),
        "use_tls": env_bool("EMAIL_USE_TLS"),
        "timeout": env_int("EMAIL_TIMEOUT", 30),
    }
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Ryorin <no-reply@ryorin.localhost>")
# The mail provider's bounce/complaint webhooks (anymail, campaigns.nurture.
# provider_webhooks): the basic-auth "user:password" the provider is given, a comma list
# while rotating. Unset, the webhooks answer 503.
ANYMAIL = {"WEBHOOK_SECRET": env_list("ANYMAIL_WEBHOOK_SECRET")}

# --- Celery -------------------------------------------------------------------------
# With no broker configured, tasks run in-process right after the transaction commits
# (the embedded runner), so the app works with no Redis at all.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
# Where tasks go unless told otherwise, including tasks that tasks queue (a dispatched
# event queueing its webhook deliveries). A test worker sets a queue of its own.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")

# --- Outbound webhooks ------------------------------------------------------------------
# Signing secrets are stored encrypted (Fernet). WEBHOOK_ENCRYPTION_KEYS is a comma list of
# Fernet keys, newest first: the first encrypts, all decrypt (rotate by prepending one).
# Unset, a key is derived from SECRET_KEY; production should set it, so that rotating
# SECRET_KEY does not make the stored secrets unreadable.
WEBHOOK_ENCRYPTION_KEYS = env_list("WEBHOOK_ENCRYPTION_KEYS")
# Tenants choose the URL: production refuses plain http and private, loopback and
# link-local addresses (resolved at send time). Development, tests and the benchmark
# deliver to local receivers.
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", default=not PRODUCTION)
WEBHOOK_TIMEOUT_SECONDS = float(env_int("WEBHOOK_TIMEOUT_SECONDS", 10))
# Retry backoff: base · 2^(n-1), capped (accounts/webhooks/delivery.py). Only the
# benchmark changes these, to see a failing receiver's retries within seconds.
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 30)
WEBHOOK_RETRY_MAX_SECONDS = env_int("WEBHOOK_RETRY_MAX_SECONDS", 3600)

# --- API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["accounts.api.filtering.FilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "accounts.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "accounts.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["accounts.api.throttling.PerCallerRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"caller": env_str("API_THROTTLE_RATE", "1200/min")},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Ryorin API",
    "DESCRIPTION": "Marketing and sales on one funnel. Authenticate with an API key "
    "(`Authorization: Api-Key <key>`) or a browser session.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Tenant managers refuse to build a queryset outside a tenant scope; the schema only
    # needs each model's fields, which the plain base manager gives without a tenant.
    "DEFAULT_QUERY_MANAGER": "_base_manager",
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "accounts.models.Role",
        "GrantableRoleEnum": "accounts.api.serializers.GRANTABLE_ROLES",
        "CampaignChannelEnum": "campaigns.models.CampaignChannel",
        "CampaignStatusEnum": "campaigns.models.Campaign.Status",
        "CampaignMemberStatusEnum": "campaigns.models.CampaignMembership.Status",
        "CampaignMemberAddResultEnum": "campaigns.services.ADD_RESULTS",
        "LifecycleStageEnum": "leads.models.LifecycleStage",
        "LeadChannelEnum": "leads.models.Channel",
        "ConsentStatusEnum": "leads.models.ConsentStatus",
        "ConsentPurposeEnum": "leads.models.ConsentPurpose",
        "ActivityTypeEnum": "leads.models.ActivityType",
        "CustomFieldTypeEnum": "leads.models.CustomFieldDefinition.Type",
        "SuppressionReasonEnum": "leads.models.Suppression.Reason",
        "PrefectureEnum": "leads.models.Prefecture",
        "SizeBandEnum": "leads.models.SizeBand",
        "RevenueBandEnum": "leads.models.RevenueBand",
        "ConsentInputStatusEnum": "leads.api.serializers.CONSENT_INPUT_STATUSES",
        "ConsentInputChannelEnum": "leads.api.serializers.CONSENT_INPUT_CHANNELS",
        "BatchResultStatusEnum": "leads.api.serializers.BATCH_RESULT_STATUSES",
        "TimelineKindEnum": "leads.api.serializers.TIMELINE_KINDS",
        "UpsertPolicyEnum": "leads.api.serializers.UPSERT_POLICIES",
        "TenantKindEnum": "accounts.models.Tenant.Kind",
        "WebhookDeliveryStatusEnum": "accounts.webhooks.models.DeliveryStatus",
        "WebhookDisabledReasonEnum": "accounts.webhooks.models.WebhookEndpoint.DisabledReason",
        "ScoringRuleKindEnum": "leads.models.ScoringRule.Kind",
        "SequenceStatusEnum": "campaigns.models.Sequence.Status",
        "StepKindEnum": "campaigns.models.StepKind",
        "EnrolmentStateEnum": "campaigns.models.Enrolment.State",
        "EnrolmentExitReasonEnum": "campaigns.models.Enrolment.ExitReason",
        "EnrolmentSourceEnum": "campaigns.models.Enrolment.Source",
        "OutgoingMessageStatusEnum": "campaigns.models.OutgoingMessage.Status",
    },
}

# --- Security (production) ------------------------------------------------------------
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # One INFO line per webhook request is noise; the delivery log keeps each attempt.
        "httpx": {"level": "WARNING"},
    },
}

# Absolute base URL of the app, for links in emails.
SITE_URL = env_str("SITE_URL", "http://localhost:8000")
