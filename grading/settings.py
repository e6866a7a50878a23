"""Settings for gradebench, read from environment variables.

Every variable is documented in `.env.example`. Defaults give a working single-machine setup:
SQLite in `var/`, an embedded (filesystem) Celery broker, a file-based cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

# Lets admin classes be written as ModelAdmin[Model] (type parameters) at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("GRADEBENCH_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false)")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
INSECURE_DEV_KEY = "django-insecure-gradebench-development-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY") or INSECURE_DEV_KEY
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "axes",
    "inference",
    "grading",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    # PostgreSQL refuses NUL in text: a URL carrying one is a 400, not a DataError in a view.
    "grading.middleware.refuse_nul_characters",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page requires login unless its view is marked @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns lockouts into a response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "grading.urls"
WSGI_APPLICATION = "grading.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "grading.context_processors.roles",
            ],
        },
    },
]

# Database: DATABASE_URL, else an SQLite file in var/ (WAL, so the web server and a worker can
# read and write side by side).
_default_sqlite = f"sqlite:///{VAR_DIR / 'gradebench.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or _default_sqlite,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests use a file, not memory, so a worker process can see the test database; one per
    # test session, so two sessions on one checkout never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-gradebench-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Failed logins: after AXES_FAILURE_LIMIT failures for one username from one address, that
# pair is locked out for AXES_COOLOFF_MINUTES.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_IPWARE_PROXY_COUNT = env_int("PROXY_COUNT", 0)
AXES_VERBOSE = False

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("简体中文"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # plotly.js from the installed plotly package (the comparison pages' charts).
    "grading.staticfiles.PlotlyFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or VAR_DIR / "media")
MEDIA_URL = "media/"

# Redis, when configured, is the Celery broker and the shared cache (the cross-worker
# concurrency limits live there). Without it: an embedded filesystem broker and a file cache.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "gradebench"),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# Celery (grading/celery.py reads every CELERY_* setting).
# The longest single model request is bounded by MODEL_REQUEST_DEADLINE_S; with retries and
# back-off a task can take a few times that. Redis must not redeliver a message whose task is
# still running, so its visibility timeout sits well above the task's hard time limit.
MODEL_REQUEST_DEADLINE_S = env_int("MODEL_REQUEST_DEADLINE_S", 1800)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 3 * MODEL_REQUEST_DEADLINE_S)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
CELERY_BROKER_VISIBILITY_TIMEOUT = env_int(
    "CELERY_BROKER_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 1800
)
EMBEDDED_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(EMBEDDED_BROKER_DIR / "queue"),
        "data_folder_out": str(EMBEDDED_BROKER_DIR / "queue"),
        "control_folder": str(EMBEDDED_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Results live in the database (generations, scores); the broker carries ids only.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_DEFAULT_QUEUE", "gradebench")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A model request in flight does not depend on the broker: let it finish and store its answer
# when the broker connection drops (the database, not the message, records what is done).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# No broadcast remote control: nothing here uses it (liveness is a task: grading.worker_ping), and
# its Redis pub/sub channel is what fails to recover when Redis restarts under a busy worker.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = env_bool("CELERY_WORKER_ENABLE_REMOTE_CONTROL", False)
CELERY_TIMEZONE = TIME_ZONE
# Model requests are I/O-bound streams: a threads pool holds many of them at once. Set the
# concurrency at least to the sum of max_concurrency of the endpoints that run at the same time.
CELERY_WORKER_POOL = env_str("CELERY_WORKER_POOL", "threads")
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 64)
# How long (ms) a thread of a worker process may hold the interpreter lock while another waits
# for it (Python's switch interval, 5 ms by default). The stream loop that times every stream
# waits that long whenever a task thread is busy storing an answer: with one busy thread its
# median lateness was 5.3 ms at 5 ms, 1.3 ms at 1 ms (README, "Timing at load").
WORKER_SWITCH_INTERVAL_MS = float(env_str("WORKER_SWITCH_INTERVAL_MS", "1"))
# A worker keeps its database connections (one per task thread) for this many seconds instead
# of opening one for every task, which cost ~100 ms on PostgreSQL and held up the claim; 0 opens
# one per task as Celery does by default. Each connection is checked before its first use in a
# task (CONN_HEALTH_CHECKS) and closed after a task that broke it (inference/tasks.py). A worker
# process holds up to CELERY_WORKER_CONCURRENCY + 2 connections: keep their sum over all workers
# (and gunicorn's) below PostgreSQL's max_connections.
WORKER_DATABASE_CONN_MAX_AGE = env_int("WORKER_DATABASE_CONN_MAX_AGE", 600)
if WORKER_DATABASE_CONN_MAX_AGE:
    # Celery's Django fixup closes every connection around every task, whatever CONN_MAX_AGE
    # says, unless told to reuse them: the worker's own handlers then close what is broken or
    # too old, as Django does around a request.
    CELERY_DB_REUSE_MAX = 1_000_000_000

# Dispatch of generations (inference/dispatch.py).
# A running generation holds a lease that its worker renews; when a worker dies, the lease
# runs out and the generation is queued again.
GENERATION_LEASE_S = env_int("GENERATION_LEASE_S", 60)
# A queued generation whose message has not been taken after this long is enqueued again
# (a lost broker message, a restarted Redis without persistence).
GENERATION_REQUEUE_S = env_int("GENERATION_REQUEUE_S", 120)
DISPATCH_SWEEP_S = env_int("DISPATCH_SWEEP_S", 15)
# A task that finishes a generation takes the endpoint's next one itself (its slot never goes
# idle); after this many, or once it has run this many seconds, it returns and the rest go back
# through the queue, behind the other endpoints' work: with fewer worker threads than slots,
# every model of a run moves on instead of one model taking every thread until it is done.
DISPATCH_CHAIN_MAX = env_int("DISPATCH_CHAIN_MAX", 50)
DISPATCH_CHAIN_MAX_S = env_int("DISPATCH_CHAIN_MAX_S", 30)
MODEL_MAX_ATTEMPTS = env_int("MODEL_MAX_ATTEMPTS", 3)
MODEL_RETRY_BASE_S = float(env_str("MODEL_RETRY_BASE_S", "2"))
MODEL_RETRY_CAP_S = float(env_str("MODEL_RETRY_CAP_S", "60"))
# Longest silence tolerated while waiting for the next chunk (queueing + prefill included).
MODEL_READ_TIMEOUT_S = env_int("MODEL_READ_TIMEOUT_S", 300)
# A generation timed while its worker process ran more than this late (the worst lateness of
# its lag monitor during the stream) is stored as timing_quality=degraded and left out of speed
# figures: its timestamps may be late by as much (DESIGN §5, inference/scheduling_lag.py).
TIMING_LAG_THRESHOLD_MS = float(env_str("TIMING_LAG_THRESHOLD_MS", "10"))

# Review: how long an item stays reserved for a reviewer who opened it.
REVIEW_RESERVATION_S = env_int("REVIEW_RESERVATION_S", 1800)
# Exports from the campaign page: up to EXPORT_INLINE_MAX_ROWS rows (scores or generations read)
# download at once; larger ones are written by a Celery worker into EXPORT_DIR and downloaded
# from there when ready.
EXPORT_INLINE_MAX_ROWS = env_int("EXPORT_INLINE_MAX_ROWS", 20000)
EXPORT_DIR = Path(env_str("EXPORT_DIR") or VAR_DIR / "exports")
# Results pages (grading/freshness.py): after new scores they show the previous figures while
# one rebuild per figure set runs. A build's claim lasts RESULTS_BUILD_LOCK_S (above the longest
# build: a crashed builder's claim runs out after it); a failed build is tried again after
# RESULTS_BUILD_COOLDOWN_S; a rebuild no worker has started after RESULTS_WORKER_START_S runs in
# the web process; a first visit waits up to RESULTS_FIRST_BUILD_WAIT_S for another one's build.
RESULTS_BUILD_LOCK_S = env_int("RESULTS_BUILD_LOCK_S", 600)
RESULTS_BUILD_COOLDOWN_S = env_int("RESULTS_BUILD_COOLDOWN_S", 60)
RESULTS_WORKER_START_S = env_int("RESULTS_WORKER_START_S", 5)
RESULTS_FIRST_BUILD_WAIT_S = env_int("RESULTS_FIRST_BUILD_WAIT_S", 30)
# Words that reveal a model in an answer (comma-separated); unset: inference.leaks.DEFAULT_TERMS.
if env_str("IDENTITY_LEAK_TERMS"):
    IDENTITY_LEAK_TERMS = env_list("IDENTITY_LEAK_TERMS", [])

# Security. With DEBUG off the defaults are the production ones; each can be relaxed by
# environment (for example behind a TLS-terminating proxy: SECURE_PROXY_SSL_HEADER=1).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600)
X_FRAME_OPTIONS = "DENY"

# Logging: one line per event on stdout, as key=value pairs, so `grep level=ERROR` works.
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "logfmt": {
            "()": "grading.logfmt.LogfmtFormatter",
        },
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "logfmt",
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "axes": {"level": "WARNING"},
        # The HTTP client logs every model request at INFO; the generation rows say more.
        "httpx2": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
