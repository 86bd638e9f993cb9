"""The only settings module. Everything comes from the environment; defaults run the demo.

DATABASE_URL (PostgreSQL) / REDIS_URL (cache) / CELERY_BROKER_URL switch to production services.
With DEBUG off the project refuses to start without DJANGO_SECRET_KEY, CARDSHOP_SECRET_KEYS and
CARDSHOP_HASH_KEY. With DEBUG on, missing keys are generated once into var/dev-secrets.json.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CARDSHOP_VAR_DIR", BASE_DIR / "var"))
env = os.environ.get


def _flag(name: str, default: bool) -> bool:
    return env(name, "1" if default else "0").lower() in ("1", "true", "yes", "on")


DEBUG = _flag("DEBUG", False)


def _secrets() -> dict[str, str]:
    wanted = {
        "DJANGO_SECRET_KEY": lambda: secrets.token_urlsafe(50),
        "CARDSHOP_SECRET_KEYS": lambda: __import__("core.crypto", fromlist=["x"]).generate_key_spec("dev1"),
        "CARDSHOP_HASH_KEY": lambda: secrets.token_urlsafe(32),
    }
    found = {k: env(k, "") for k in wanted}
    missing = [k for k, v in found.items() if not v]
    if missing and not DEBUG:
        raise ImproperlyConfigured(f"set {', '.join(missing)} in the environment (DEBUG is off)")
    if missing:
        path = VAR_DIR / "dev-secrets.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        for k in missing:
            stored.setdefault(k, wanted[k]())
            found[k] = stored[k]
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return found


_keys = _secrets()
SECRET_KEY = _keys["DJANGO_SECRET_KEY"]
CARDSHOP_SECRET_KEYS = _keys["CARDSHOP_SECRET_KEYS"]
CARDSHOP_HASH_KEY = _keys["CARDSHOP_HASH_KEY"]

ALLOWED_HOSTS = [h for h in env("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env("CSRF_TRUSTED_ORIGINS", "").split(",") if o]
# Where providers send callbacks and buyers come back to; the demo serves on 127.0.0.1:8000.
CARDSHOP_PUBLIC_URL = env("CARDSHOP_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "unfold.apps.BasicAppConfig",  # the admin theme (templates before django.contrib.admin's); our site is cardshop.admin_site
    "cardshop.apps.CardShopAdminConfig",  # django.contrib.admin with the operators' site (cardshop/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # the API docs' Swagger UI files, served by this server (no CDN)
    "core.apps.CoreConfig",
    "payments.apps.PaymentsConfig",
    "risk.apps.RiskConfig",
    "settlement.apps.SettlementConfig",
    "cardshop.apps.CardshopConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "cardshop.sessions.SplitSessionMiddleware",  # staff: database rows; buyers: signed cookies
    "cardshop.device.DeviceCookieMiddleware",  # the storefront's device id, one of risk's signals
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "cardshop.views.errors.BuyerErrorPagesMiddleware",  # under DEBUG too, buyers get the shop's 404/500 pages
]

ROOT_URLCONF = "cardshop.urls"
WSGI_APPLICATION = "cardshop.wsgi.application"

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
            ]
        },
    }
]

DATABASES = {"default": dj_database_url.config(default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}", conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the demo file: wait instead of failing on a write lock.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
    # Tests with a live server write from two threads: a file waits on a lock where shared memory fails at once.
    # One file per test process, so two runs in one checkout do not share (and delete) each other's database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
elif _flag("DATABASE_POOL", True):
    # Opening a PostgreSQL connection per request doubled the database's CPU per order (bench/checkout_pay.py).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": int(env("DATABASE_POOL_MAX", "8")),
    }

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Lets core.prepared prepare the hot paths' few statements (the ledger's, risk's), from their first run;
    # Django's own queries bind on the client and are never prepared. 0: off (a pooler that drops them).
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        0 if _flag("DATABASE_PREPARED", True) else None
    )

REDIS_URL = env("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "cardshop"}}

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "core.hashers.KeyedQueryPasswordHasher",  # query passwords of orders (core/hashers.py says why keyed)
    "core.hashers.QueryPasswordHasher",  # ... and of orders placed before it
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale", BASE_DIR / "locale_vendor" / "unfold"]  # ours first; the theme ships no Chinese

# The back office theme (django-unfold): names, the language switch, and the dashboard as the admin's home
# (cardshop/admin_site.py renders it from cardshop/dashboard.py).
UNFOLD = {
    "SITE_TITLE": _("CardShop back office"),
    "SITE_HEADER": _("CardShop back office"),
    "SITE_SYMBOL": "storefront",  # a Material Symbols name
    "SITE_URL": "/",
    "SHOW_LANGUAGES": True,
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": True,
    "SIDEBAR": {"show_search": True, "show_all_applications": True},
    "COLORS": {
        "primary": {  # teal: calmer than the default purple, and distinct from the state badges
            "50": "oklch(98.4% .014 180.72)",
            "100": "oklch(95.3% .051 180.801)",
            "200": "oklch(91% .096 180.426)",
            "300": "oklch(85.5% .138 181.071)",
            "400": "oklch(77.7% .152 181.912)",
            "500": "oklch(70.4% .14 182.503)",
            "600": "oklch(60% .118 184.704)",
            "700": "oklch(51.1% .096 186.391)",
            "800": "oklch(43.7% .078 188.216)",
            "900": "oklch(38.6% .063 188.416)",
            "950": "oklch(27.7% .046 192.524)",
        },
    },
}
TIME_ZONE = env("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing folder
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Production runs collectstatic and sets STATIC_MANIFEST=1 for hashed, compressed files.
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if _flag("STATIC_MANIFEST", False)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = VAR_DIR / "mail"
# A send must end well inside the mail claim's lease, or the sweep would take over a send still under way.
EMAIL_TIMEOUT = int(env("EMAIL_TIMEOUT", "30"))
CARDSHOP_MAIL_CLAIM_LEASE_SECONDS = int(env("CARDSHOP_MAIL_CLAIM_LEASE_SECONDS", "600"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "CardShop <noreply@cardshop.local>")

# Staff sessions (the admin) are database rows, so logging out kills them (cardshop/sessions.py). Buyer sessions
# hold only the order numbers they may open: a signed cookie, no database row per visitor.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_NAME = "cardshop_staff"
SESSION_COOKIE_PATH = "/admin/"
CARDSHOP_STAFF_PATH_PREFIX = "/admin/"
CARDSHOP_BUYER_SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
CARDSHOP_BUYER_SESSION_COOKIE_NAME = "cardshop_buyer"
SESSION_COOKIE_HTTPONLY = True
# Operators: a second factor (TOTP or a recovery code) unless DEBUG; failed logins lock the account and the
# client address (IPv6: its /64) for the lockout.
CARDSHOP_ADMIN_OTP_REQUIRED = _flag("CARDSHOP_ADMIN_OTP_REQUIRED", not DEBUG)
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", "CardShop")
CARDSHOP_ADMIN_LOGIN_FAILURES_PER_ACCOUNT = int(env("CARDSHOP_ADMIN_LOGIN_FAILURES_PER_ACCOUNT", "5"))
CARDSHOP_ADMIN_LOGIN_FAILURES_PER_IP = int(env("CARDSHOP_ADMIN_LOGIN_FAILURES_PER_IP", "20"))
CARDSHOP_ADMIN_LOGIN_LOCKOUT_SECONDS = int(env("CARDSHOP_ADMIN_LOGIN_LOCKOUT_SECONDS", "900"))
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"  # order links carry tokens; never leak them to another site
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = _flag("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = int(env("SECURE_HSTS_SECONDS", "0"))
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if _flag("BEHIND_TLS_PROXY", False) else None
SESSION_COOKIE_SECURE = _flag("SECURE_COOKIES", not DEBUG and CARDSHOP_PUBLIC_URL.startswith("https"))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- Celery: the embedded default needs no server (kombu filesystem transport). ---
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _q = VAR_DIR / "celery"
    for _d in ("out", "processed", "control"):
        (_q / _d).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_q / "out"),
        "data_folder_out": str(_q / "out"),
        "processed_folder": str(_q / "processed"),
        "store_processed": False,
        "control_folder": str(_q / "control"),
        "polling_interval": 0.1,
    }
CELERY_TASK_ALWAYS_EAGER = _flag("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Shop rules (operators tune these by environment) ---
CARDSHOP_ORDER_TTL_SECONDS = int(env("CARDSHOP_ORDER_TTL_SECONDS", "900"))
# An order risk sends to review holds its stock this long for an operator; then it expires like an unpaid one.
CARDSHOP_REVIEW_SECONDS = int(env("CARDSHOP_REVIEW_SECONDS", str(24 * 3600)))
# Risk decides every checkout; off only for a measurement or an emergency (every checkout is then allowed).
RISK_ENABLED = _flag("RISK_ENABLED", True)
# Who tells risk's backtest what became of an order (risk knows no orders; the layer above does).
RISK_ORDER_OUTCOMES = "cardshop.services.risk_outcomes.order_outcomes"
# A checkout risk challenges waits this long for the buyer's code or captcha.
RISK_CHALLENGE_SECONDS = int(env("RISK_CHALLENGE_SECONDS", "600"))
# Unpaid orders held at once, counted per email and, separately, per network (an IPv4 address or IPv6 /64): a
# shared NAT must not block strangers, so the IP cap is the larger. CARDSHOP_MAX_PENDING_PER_BUYER, the old single
# cap, still sizes both when set (see cardshop.services.checkout.pending_caps).
_pending_legacy = env("CARDSHOP_MAX_PENDING_PER_BUYER", "")
CARDSHOP_MAX_PENDING_PER_BUYER = int(_pending_legacy) if _pending_legacy else None
CARDSHOP_MAX_PENDING_PER_EMAIL = int(env("CARDSHOP_MAX_PENDING_PER_EMAIL", "3"))
CARDSHOP_MAX_PENDING_PER_IP = int(env("CARDSHOP_MAX_PENDING_PER_IP", "10"))
# The operators' dashboard lists products on sale with fewer free card secrets than this.
CARDSHOP_LOW_STOCK_THRESHOLD = int(env("CARDSHOP_LOW_STOCK_THRESHOLD", "5"))
# Settlement: how many levels an agent tree may have (a merchant's agent, its parent, ...); deeper is refused.
SETTLEMENT_AGENT_MAX_DEPTH = int(env("SETTLEMENT_AGENT_MAX_DEPTH", "3"))
# A merchant with no active fee plan in a currency still gets its sales booked, on this plan: the platform's rate
# in basis points (no fixed fee, no reserve, no agent commission) and the cycle (T+0, T+1 or D+N with N days).
SETTLEMENT_DEFAULT_PLATFORM_RATE_BP = int(env("SETTLEMENT_DEFAULT_PLATFORM_RATE_BP", "0"))
SETTLEMENT_DEFAULT_CYCLE = env("SETTLEMENT_DEFAULT_CYCLE", "T+1")
# ledger_check lists money in suspense for longer than this many days.
SETTLEMENT_SUSPENSE_MAX_DAYS = int(env("SETTLEMENT_SUSPENSE_MAX_DAYS", "7"))
# The task an operator's "Reconcile a day" runs: the top layer's, which also recovers lost callbacks.
SETTLEMENT_RECONCILE_TASK = "cardshop.reconcile_day"
# Provider calls: (connect, read) seconds. Connect failures fail over; read timeouts leave a payment UNKNOWN.
PAYMENTS_PROVIDER_TIMEOUTS = (
    float(env("PAYMENTS_CONNECT_TIMEOUT", "2")),
    float(env("PAYMENTS_READ_TIMEOUT", "8")),
)
# Behind a reverse proxy: the META key of the header it sets, e.g. HTTP_X_REAL_IP (its last hop is used).
CARDSHOP_CLIENT_IP_HEADER = env("CARDSHOP_CLIENT_IP_HEADER", "")
CARDSHOP_LOOKUP_RATE_IP = env("CARDSHOP_LOOKUP_RATE_IP", "20/h")
CARDSHOP_LOOKUP_RATE_ORDER = env("CARDSHOP_LOOKUP_RATE_ORDER", "5/15m")
RATELIMIT_USE_CACHE = "default"

# The merchant API (cardshop/api/): JSON only, a merchant's key, its scopes, a rate per key, one error shape.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["cardshop.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["cardshop.api.permissions.KeyHasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["cardshop.api.throttling.PerKeyRate"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "cardshop.api.pagination.NewestFirst",
    "DEFAULT_SCHEMA_CLASS": "cardshop.api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "cardshop.api.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
CARDSHOP_API_RATE = env("CARDSHOP_API_RATE", "50/s")  # requests per key: n/s, n/m, n/h or n/d
# Webhook URLs that resolve to loopback or private addresses: refused unless DEBUG (the demo's receiver) or this.
CARDSHOP_WEBHOOKS_ALLOW_PRIVATE = _flag("CARDSHOP_WEBHOOKS_ALLOW_PRIVATE", DEBUG)
# Telegram's Bot API, for merchants' alerts (the demo points it at cardshop.simulators.telegram_bot).
CARDSHOP_TELEGRAM_API = env("CARDSHOP_TELEGRAM_API", "https://api.telegram.org")
SPECTACULAR_SETTINGS = {
    "TITLE": "CardShop merchant API",
    "DESCRIPTION": (
        "Your products, stock and orders from your own code. Authenticate with `Authorization: Bearer <key>`; "
        "money is integer minor units with its currency; POSTs take an `Idempotency-Key`."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Gateways (payments/gateways.py): epay and the bank have no official host, so the deployer lists theirs,
# e.g. {"epay": ["pay.example.com"], "bankgw": ["gw.bank.example"]}. Loopback simulators only with DEBUG or this.
CARDSHOP_GATEWAY_HOSTS = json.loads(env("CARDSHOP_GATEWAY_HOSTS", "{}"))
if not isinstance(CARDSHOP_GATEWAY_HOSTS, dict) or not all(
    isinstance(v, list) and all(isinstance(h, str) for h in v) for v in CARDSHOP_GATEWAY_HOSTS.values()
):
    raise ImproperlyConfigured('CARDSHOP_GATEWAY_HOSTS must be a JSON object like {"epay": ["pay.example.com"]}')
CARDSHOP_ALLOW_LOOPBACK_GATEWAYS = _flag("CARDSHOP_ALLOW_LOOPBACK_GATEWAYS", False)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
}
