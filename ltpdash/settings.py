"""Settings, read from the environment.

The embedded default (nothing set) is SQLite in WAL mode plus Channels' in-memory layer, so a
fresh machine runs everything in one process. DATABASE_URL and REDIS_URL switch to the
scale-out mode. Every variable is documented in the README.
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # Reusing connections matters on the frame path: opening one per frame costs ~3x.
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": f"test_ltpdash{TEST_SUFFIX.replace('-', '_')}"},
    }


DEFAULT_SECRET_KEY = "ltpdash-insecure-embedded-default-key"
PRODUCTION = env_bool("LTPDASH_PRODUCTION", False)
SECRET_KEY = env_str("LTPDASH_SECRET_KEY", DEFAULT_SECRET_KEY)
if PRODUCTION and SECRET_KEY == DEFAULT_SECRET_KEY:
    raise ImproperlyConfigured(
        "LTPDASH_PRODUCTION is on but LTPDASH_SECRET_KEY is the default; set a secret key."
    )
DEBUG = env_bool("LTPDASH_DEBUG", False)
ALLOWED_HOSTS = env_list("LTPDASH_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("LTPDASH_CSRF_TRUSTED_ORIGINS", "")
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "template_partials",
    "axes",
    "coordination",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "coordination.middleware.content_security_policy",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # Refuses a login while its username + address is locked out, and counts failures.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling: after AXES_FAILURE_LIMIT failed logins for one username from one address,
# that pair is locked for AXES_COOLOFF_TIME (admins lift it on the Operators page).
AXES_FAILURE_LIMIT = env_int("LTPDASH_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LTPDASH_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "coordination.views.access.locked_out"
AXES_VERBOSE = False

ROOT_URLCONF = "ltpdash.urls"
ASGI_APPLICATION = "ltpdash.asgi.application"

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
            ],
        },
    },
]

DATA_DIR = Path(env_str("LTPDASH_DATA_DIR", str(BASE_DIR / "var")))
# Lets several test runs share a machine without sharing a test database.
TEST_SUFFIX = env_str("LTPDASH_TEST_SUFFIX", "")
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": Path(env_str("LTPDASH_SQLITE_PATH", str(DATA_DIR / "ltpdash.sqlite3"))),
            "CONN_MAX_AGE": 60,
            "OPTIONS": {
                # IMMEDIATE takes the write lock at BEGIN, so two processes (daphne and the
                # sweeper) wait for each other instead of failing on a lock upgrade.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not memory: end-to-end tests share it with a real daphne process.
            "TEST": {"NAME": str(DATA_DIR / f"test-ltpdash{TEST_SUFFIX}.sqlite3")},
        }
    }

REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 30},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "coordination-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
# The embedded mode serves static files from daphne itself; behind a proxy turn this off.
SERVE_STATIC = env_bool("LTPDASH_SERVE_STATIC", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LTPDASH_LOG_LEVEL", "WARNING")},
}

# --- LTP / ltpdash behaviour -------------------------------------------------------------
LTP_MAX_FRAME_BYTES = env_int("LTPDASH_MAX_FRAME_BYTES", 64 * 1024, minimum=1024)
# Frames per second an agent may send, all its sockets and HTTP calls together (token bucket
# per daphne process, burst = 2x; coordination/limits.py).
LTP_RATE_LIMIT = env_int("LTPDASH_RATE_LIMIT", 500, minimum=1)
# Batches of agents' frames stored at once per daphne process (coordination.batching). One on
# both databases: on PostgreSQL more lanes overlap their round trips, but their threads take
# turns at the GIL with the event loop, and the batches get smaller (scripts/bench.sh
# --scale-out, C=10: 1,856 frames/s with one lane, 1,469 with four).
LTP_INGEST_LANES = env_int("LTPDASH_INGEST_LANES", 1, minimum=1)
LTP_MAX_FRAMES_PER_REQUEST = env_int("LTPDASH_MAX_FRAMES_PER_REQUEST", 500, minimum=1)
# Live sockets one agent may hold; one more is closed with 4409.
LTP_MAX_CONNECTIONS_PER_AGENT = env_int("LTPDASH_MAX_CONNECTIONS_PER_AGENT", 16, minimum=1)
HEARTBEAT_TIMEOUT = env_int("LTPDASH_HEARTBEAT_TIMEOUT", 30, minimum=1)
ROUTE_TIMEOUT = env_int("LTPDASH_ROUTE_TIMEOUT", 60, minimum=1)
ESCALATION_DEADLINE = env_int("LTPDASH_ESCALATION_DEADLINE", 900, minimum=1)
# What an escalation gets at its deadline: "reject" (safe default) or "next_tier" (admins).
ESCALATION_DEFAULT = env_str("LTPDASH_ESCALATION_DEFAULT", "reject")
if ESCALATION_DEFAULT not in {"reject", "next_tier"}:
    raise ImproperlyConfigured("LTPDASH_ESCALATION_DEFAULT must be 'reject' or 'next_tier'")
# Added to LTP's own critical actions (coordination.decisions.LTP_CRITICAL_ACTIONS).
EXTRA_CRITICAL_ACTIONS = env_list("LTPDASH_EXTRA_CRITICAL_ACTIONS", "")
CRITICAL_APPROVALS = env_int("LTPDASH_CRITICAL_APPROVALS", 1, minimum=1)
SWEEP_INTERVAL = float(env_int("LTPDASH_SWEEP_INTERVAL_MS", 1000, minimum=50)) / 1000
# How often a connected agent's socket looks in its outbox for frames no event announced
# (the sweeper's, on the in-memory layer; or dropped by a full channel). The safety net only.
OUTBOX_CHECK_SECONDS = env_int("LTPDASH_OUTBOX_CHECK_MS", 2000, minimum=10) / 1000
# A cached integrity verdict older than this is recomputed over the whole chain on the next
# page view (a stored frame altered in place does not move the chain head).
INTEGRITY_MAX_AGE = env_int("LTPDASH_INTEGRITY_MAX_AGE", 300, minimum=0)

# --- Reaching people outside the console (coordination/notifications.py) --------------------
# Links in emails, webhooks and Slack messages point here.
BASE_URL = env_str("LTPDASH_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# Unset host = no email at all.
EMAIL_HOST = env_str("LTPDASH_EMAIL_HOST", "")
EMAIL_PORT = env_int("LTPDASH_EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("LTPDASH_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = env_str("LTPDASH_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("LTPDASH_EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("LTPDASH_EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("LTPDASH_EMAIL_FROM", "ltpdash@localhost")
WEBHOOK_URLS = env_list("LTPDASH_WEBHOOK_URLS", "")
WEBHOOK_SECRET = env_str("LTPDASH_WEBHOOK_SECRET", "")
if WEBHOOK_URLS and not WEBHOOK_SECRET:
    raise ImproperlyConfigured(
        "LTPDASH_WEBHOOK_URLS is set but LTPDASH_WEBHOOK_SECRET is not: receivers could not "
        "tell ltpdash's requests from anyone else's."
    )
SLACK_WEBHOOK_URL = env_str("LTPDASH_SLACK_WEBHOOK_URL", "")
for _url in [*WEBHOOK_URLS, SLACK_WEBHOOK_URL]:
    if _url and not _url.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"webhook URLs must be http:// or https://, not {_url!r}")
ESCALATION_REMIND_BEFORE = env_int("LTPDASH_ESCALATION_REMIND_BEFORE", 120, minimum=0)
# Retries: the n-th failed attempt waits BACKOFF * 2**(n-1), at most NOTIFY_MAX_WAIT, and a
# notification is given up after NOTIFY_MAX_ATTEMPTS attempts (defaults: about 23 minutes).
NOTIFY_BACKOFF = float(env_int("LTPDASH_NOTIFY_BACKOFF_MS", 2000, minimum=10)) / 1000
NOTIFY_MAX_WAIT = 300.0
NOTIFY_MAX_ATTEMPTS = env_int("LTPDASH_NOTIFY_MAX_ATTEMPTS", 12, minimum=1)
NOTIFY_TIMEOUT = 5.0
