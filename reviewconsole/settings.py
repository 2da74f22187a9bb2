"""Settings for the review console, every one of them read from the environment."""

import os
from pathlib import Path

import dj_database_url

from reviewconsole.env import envbool, envint, envlist

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


DEBUG = envbool("DEBUG", False)
TESTING = envbool("TESTING", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and not TESTING and not envbool("DEMO"):
        raise RuntimeError("SECRET_KEY must be set when DEBUG, DEMO and TESTING are all off")
    SECRET_KEY = "insecure-local-only-key-" + "x" * 40

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_rq",
    "axes",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "reviewconsole",
    "reviewconsole.audit",
    "detection",
    "cases",
]
DEMO = envbool("DEMO", False)
if DEBUG or TESTING or DEMO:
    INSTALLED_APPS.append("reviewconsole.devtools")  # synthetic images, demo data, benchmarks

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "cases.web.middleware.SessionPolicyMiddleware",
    "cases.web.middleware.NoStoreMiddleware",
    "cases.web.middleware.JobDashboardLookupMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "reviewconsole.urls"
WSGI_APPLICATION = "reviewconsole.wsgi.application"

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
                "cases.web.context.undo_offer",
            ],
        },
    },
]

# Database: SQLite under var/ unless DATABASE_URL names another (PostgreSQL in production).
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=envint("DB_CONN_MAX_AGE", 0 if TESTING else 300),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while a worker writes; IMMEDIATE makes writers queue on the
    # busy timeout instead of failing with "database is locked" when a read upgrades to a write.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that worker processes started by tests see the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: a private redis-server on a socket under var/ unless REDIS_URL names a shared one.
PRIVATE_REDIS_SOCKET = VAR_DIR / ("redis-test" if TESTING else "redis") / "redis.sock"
REDIS_URL = os.environ.get("REDIS_URL") or f"unix://{PRIVATE_REDIS_SOCKET}"

RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300},
    "scan": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 120},
    "triage": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 60},
    "dispatch": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 60},
    "classify": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
}
# Queues a worker started without names listens on, most urgent first.
# Retroactive matching has a queue of its own: the worker serving it holds the index of every stored
# item's hashes (about 100 bytes a hash, eight hashes an image), so run one such worker per machine.
RQ_QUEUES["retro"] = {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600}
WORKER_QUEUES = ["triage", "dispatch", "scan", "classify", "default", "retro"]
RETRO_SETTLE_SECONDS = envint("RETRO_SETTLE_SECONDS", 60)
RETRO_LEASE_SECONDS = envint("RETRO_LEASE_SECONDS", 900)
RETRO_JOB_SECONDS = envint("RETRO_JOB_SECONDS", 600)
# How long a search waits for the retro worker to answer a PDQ near search before it searches exact matches.
SEARCH_NEAR_TIMEOUT = float(os.environ.get("SEARCH_NEAR_TIMEOUT", "2"))
RQ = {"WORKER_CLASS": "reviewconsole.worker.ConsoleWorker"}
RQ_SHOW_ADMIN_LINK = True

# Health and monitoring (cases.web.monitoring). /healthz and /readyz answer anyone, without a session;
# /metrics (Prometheus) answers only `Authorization: Bearer <METRICS_TOKEN>`, and is not found while the
# token is empty. /readyz fails when the oldest item waiting for its scan, or signal waiting for triage,
# has waited longer than READY_MAX_QUEUE_AGE_SECONDS, or when no RQ worker has sent a heartbeat for
# READY_WORKER_HEARTBEAT_SECONDS: an idle worker beats only every 405 s (RQ's worker TTL less 15 s), but the
# cron's sweep every SWEEP_INTERVAL_SECONDS is a job, after which the worker that ran it beats.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
READY_MAX_QUEUE_AGE_SECONDS = envint("READY_MAX_QUEUE_AGE_SECONDS", 600)
READY_WORKER_HEARTBEAT_SECONDS = envint("READY_WORKER_HEARTBEAT_SECONDS", 120)
# Orchestrators and load balancers probe over plain HTTP from inside the network: no redirect to HTTPS for
# the two probes (they show no case data). /metrics carries a token and stays behind the redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): lock a username+IP pair after repeated failures.
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = envint("AXES_COOLOFF_MINUTES", 15) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The client address axes locks on. Only behind a proxy (TRUSTED_PROXY_COUNT > 0 proxies of ours,
# each appending to X-Forwarded-For) is that header read, and then only the entry our outermost
# proxy wrote; otherwise REMOTE_ADDR, never a header the client can send.
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "cases.web.middleware.client_ip_for_throttling"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG or TESTING:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# Evidence lives under a private root that no URL maps to; only cases.evidence serves it.
EVIDENCE_ROOT = Path(os.environ.get("EVIDENCE_ROOT", VAR_DIR / "evidence"))
MAX_UPLOAD_BYTES = envint("MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
MAX_TEXT_CHARS = envint("MAX_TEXT_CHARS", 20_000)
# Matching text terms against one subject's (or one item's) texts stops after this many seconds
# and logs; term patterns run on RE2 (linear time), so this is only a second line of defence.
TEXT_MATCH_SECONDS = float(os.environ.get("TEXT_MATCH_SECONDS", "2"))

# Decoding limits for untrusted images.
IMAGE_MAX_PIXELS = envint("IMAGE_MAX_PIXELS", 50_000_000)
IMAGE_MAX_FRAMES = envint("IMAGE_MAX_FRAMES", 500)
# Video and animation: frames sampled (one a second plus scene changes) and hashed per file, and the
# decode budget that ends a file in "rejected" rather than a worker stuck on it.
VIDEO_MAX_FRAMES = envint("VIDEO_MAX_FRAMES", 64)
VIDEO_MAX_DECODED_FRAMES = envint("VIDEO_MAX_DECODED_FRAMES", 30_000)
VIDEO_MAX_SECONDS = envint("VIDEO_MAX_SECONDS", 900)
VIDEO_MAX_DECODE_SECONDS = envint("VIDEO_MAX_DECODE_SECONDS", 30)
VIDEO_MAX_SIDE = envint("VIDEO_MAX_SIDE", 4096)
VIDEO_SCENE_THRESHOLD = envint("VIDEO_SCENE_THRESHOLD", 30)  # mean difference of 0..255 thumbnails
VIDEO_MAX_ANIMATION_PIXELS = envint("VIDEO_MAX_ANIMATION_PIXELS", 400_000_000)  # logical screen x frames

# Matching thresholds (per-bank thresholds for pHash/dHash live on the bank).
PDQ_MATCH_THRESHOLD = envint("PDQ_MATCH_THRESHOLD", 31)
PDQ_MIN_QUALITY = envint("PDQ_MIN_QUALITY", 50)

# Reliability: how long work may wait before the sweep re-enqueues it, and how many times a
# scan may start without finishing (a worker killed by the file) before the item is rejected.
SWEEP_AFTER_SECONDS = envint("SWEEP_AFTER_SECONDS", 120)
SWEEP_INTERVAL_SECONDS = envint("SWEEP_INTERVAL_SECONDS", 60)
# A running batch renews its claims every third of the lease (SCAN_LEASE_SECONDS), so a claim lapses
# within a lease of its worker's death; cron looks for lapsed scan claims this often (a cheap, indexed
# check), so a dead worker's items are scanned again within a lease and a check of its death.
LEASE_CHECK_SECONDS = envint("LEASE_CHECK_SECONDS", 10)
SCAN_MAX_ATTEMPTS = envint("SCAN_MAX_ATTEMPTS", 3)
# Scans run in batches claimed from the database: up to SCAN_BATCH items a claim, for at most
# SCAN_JOB_SECONDS a job (a batch hands back what it has not reached by then), with up to
# SCAN_SLOTS scan jobs waiting at once (one per worker is plenty). Each batch costs a claim, a
# match-index check, a triage job and a classifier kick, so larger batches leave more of the
# worker's time to hashing; an item retried after a crash is claimed alone.
SCAN_BATCH = envint("SCAN_BATCH", 64)
# A scan job hands its signals to triage at most this often (and when it ends).
SCAN_TRIAGE_SECONDS = envint("SCAN_TRIAGE_SECONDS", 5)
SCAN_JOB_SECONDS = envint("SCAN_JOB_SECONDS", 20)
SCAN_SLOTS = envint("SCAN_SLOTS", 4)
SCAN_LEASE_SECONDS = envint("SCAN_LEASE_SECONDS", 30)  # renewed every third of it while a batch runs
# Hash-only items (no bytes to decode) are matched in the intake request and stored scanned with their
# signals in one write, where the web process's bank index is ready (detection.matching.ready); off, or
# not ready, they are queued for the scan like files.
INTAKE_MATCH = envbool("INTAKE_MATCH", True)
# Shared-media requests (an actioned account's media against everyone else's) are run in batches by one job
# (detection.jobs.retro.share_pending) for at most this long before it hands on to the next.
SHARE_JOB_SECONDS = envint("SHARE_JOB_SECONDS", 30)
# Their signals are triaged by one run for everything committed meanwhile (cases.jobs.triage_pending),
# which may wait this many seconds after the first to gather more: a rule then decides more cases
# together, cheaper a case, but every ban comes that much later, and the platform keeps sending from
# accounts about to be banned meanwhile. At 2 s the month benchmark spent no less CPU and left four
# times as many later cases to people, so by default the run starts at once (it still takes everything
# that committed while the previous run worked).
TRIAGE_GATHER_SECONDS = envint("TRIAGE_GATHER_SECONDS", 0)

# Classifiers for new, unknown imagery, by dotted path with their options (see detection.detectors).
# A classifier alone never actions anything: its finding raises priority and routes to review.
# Severity sits below known material (banks default to 90); an empty CLASSIFIERS switches them off.
CLASSIFIERS = [
    {"path": "detection.detectors.nudity.NudeNetDetector",
     "threshold": float(os.environ.get("NUDITY_THRESHOLD", "0.5")),
     "severity": envint("NUDITY_SEVERITY", 60)},
] if envbool("CLASSIFIERS_ENABLED", True) else []
# Classification runs in claimed batches like scans, their claims renewed while they run: a dead
# worker's claim lapses after CLASSIFY_LEASE_SECONDS, a failed item is retried after
# CLASSIFY_RETRY_SECONDS, and an item is given up after CLASSIFY_MAX_ATTEMPTS runs.
CLASSIFY_BATCH = envint("CLASSIFY_BATCH", 8)
CLASSIFY_JOB_SECONDS = envint("CLASSIFY_JOB_SECONDS", 20)
CLASSIFY_SLOTS = envint("CLASSIFY_SLOTS", 2)
CLASSIFY_LEASE_SECONDS = envint("CLASSIFY_LEASE_SECONDS", 30)
CLASSIFY_RETRY_SECONDS = envint("CLASSIFY_RETRY_SECONDS", 600)
CLASSIFY_MAX_ATTEMPTS = envint("CLASSIFY_MAX_ATTEMPTS", 3)
# Videos and animations: this many frames spread over the file are classified; the strongest counts.
CLASSIFY_VIDEO_FRAMES = envint("CLASSIFY_VIDEO_FRAMES", 4)

CASE_LEASE_SECONDS = envint("CASE_LEASE_SECONDS", 30 * 60)
# The queue page counts open cases on each request while there are fewer than QUEUE_COUNT_EXACT_BELOW
# (PostgreSQL's estimate); past that it shows the counts the cron keeps every QUEUE_STATS_SECONDS, with
# their time, and counts on the request only when those are older than QUEUE_STATS_MAX_AGE.
QUEUE_COUNT_EXACT_BELOW = envint("QUEUE_COUNT_EXACT_BELOW", 50_000)
QUEUE_STATS_SECONDS = envint("QUEUE_STATS_SECONDS", 30)
QUEUE_STATS_MAX_AGE = envint("QUEUE_STATS_MAX_AGE", 120)
# Dual control: these actions, and bans of groups larger than this, need a second reviewer.
DUAL_CONTROL_ACTIONS = envlist("DUAL_CONTROL_ACTIONS", "")
DUAL_CONTROL_GROUP_MEMBERS = envint("DUAL_CONTROL_GROUP_MEMBERS", 100)
# Share of closing decisions sampled for blind QA by a senior (0..1).
QA_SAMPLE_RATE = float(os.environ.get("QA_SAMPLE_RATE", "0.05"))
# Automation rules' circuit breakers: a rule, bank or bank entry trips when its automatic decisions in
# the last hour exceed BREAKER_FACTOR times its usual hourly rate (the last week's), and at least the
# floor below; a senior resumes it. A rule may set its own hourly limit instead.
BREAKER_FACTOR = float(os.environ.get("BREAKER_FACTOR", "10"))
BREAKER_RULE_MIN_PER_HOUR = envint("BREAKER_RULE_MIN_PER_HOUR", 2000)
BREAKER_BANK_MIN_PER_HOUR = envint("BREAKER_BANK_MIN_PER_HOUR", 2000)
BREAKER_ENTRY_MIN_PER_HOUR = envint("BREAKER_ENTRY_MIN_PER_HOUR", 100)
# Seconds a reviewer has to undo a decision before anything leaves the console.
UNDO_SECONDS = envint("UNDO_SECONDS", 10)
# Exposure budget per reviewer per day: past it the console suggests a break and stops auto-advancing.
EXPOSURE_REVEALS_PER_DAY = envint("EXPOSURE_REVEALS_PER_DAY", 40)
EXPOSURE_MINUTES_PER_DAY = envint("EXPOSURE_MINUTES_PER_DAY", 300)
# Waiting cases gain this much priority per hour, so nothing starves behind newer urgent work.
PRIORITY_AGING_PER_HOUR = envint("PRIORITY_AGING_PER_HOUR", 2)

# Risk scores (detection.risk): a subject scoring at least its threshold (0..1) raises a behaviour
# signal. The sweep re-scores up to RISK_SWEEP_LIMIT subjects a run whose facts changed since.
RISK_GROUP_THRESHOLD = float(os.environ.get("RISK_GROUP_THRESHOLD", "0.5"))
RISK_ACCOUNT_THRESHOLD = float(os.environ.get("RISK_ACCOUNT_THRESHOLD", "0.6"))
RISK_TEEN_CONTACT_THRESHOLD = float(os.environ.get("RISK_TEEN_CONTACT_THRESHOLD", "0.5"))
RISK_SWEEP_LIMIT = envint("RISK_SWEEP_LIMIT", 5000)

# Two-factor (TOTP): required to reveal evidence and to use admin and the job dashboard.
REQUIRE_2FA_FOR_REVEAL = envbool("REQUIRE_2FA_FOR_REVEAL", True)
REVEAL_SECONDS = envint("REVEAL_SECONDS", 10)  # a revealed item re-blurs after this
OTP_TOTP_ISSUER = os.environ.get("OTP_TOTP_ISSUER", "Review console")
# Enrolling an authenticator needs a one-time code an administrator issued (admin: Enrolment codes,
# or `manage.py issue_enrolment_code USER`): a stolen password alone cannot bind a device. The demo
# turns it off so that its logins work at once.
TWO_FACTOR_ENROLMENT_CODE_REQUIRED = envbool("TWO_FACTOR_ENROLMENT_CODE_REQUIRED", not envbool("DEMO"))
TWO_FACTOR_ENROLMENT_CODE_HOURS = envint("TWO_FACTOR_ENROLMENT_CODE_HOURS", 72)
# Sessions end after SESSION_IDLE_SECONDS without a request, and SESSION_MAX_SECONDS after sign-in.
SESSION_IDLE_SECONDS = envint("SESSION_IDLE_SECONDS", 30 * 60)
SESSION_MAX_SECONDS = envint("SESSION_MAX_SECONDS", 10 * 3600)

# Enforcement webhooks: per-request timeout, first retry delay (doubling up to an hour), give-up.
DISPATCH_TIMEOUT = envint("DISPATCH_TIMEOUT", 10)
DISPATCH_BACKOFF_SECONDS = envint("DISPATCH_BACKOFF_SECONDS", 30)
DISPATCH_MAX_ATTEMPTS = envint("DISPATCH_MAX_ATTEMPTS", 30)
# Outbound requests to URLs set at run time (webhooks, NCMEC) go through reviewconsole.outbound:
# loopback, private, link-local and other internal addresses are refused unless this is on
# (development and the tests, whose fakes listen on 127.0.0.1); redirects are followed, each one
# checked again, at most OUTBOUND_MAX_REDIRECTS times.
OUTBOUND_ALLOW_PRIVATE = envbool("OUTBOUND_ALLOW_PRIVATE", DEBUG or TESTING)
OUTBOUND_MAX_REDIRECTS = envint("OUTBOUND_MAX_REDIRECTS", 3)

# Sessions: reviewers work on shared machines; keep sessions short and cookie-only.
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp 4 format): no inline script or style anywhere; reveals are
# shown from blob: URLs made from the fetched rendition.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}
if not DEBUG:
    # Tests talk plain HTTP to the test client and a loopback live server.
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not TESTING)
    SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", not TESTING)
    CSRF_COOKIE_SECURE = envbool("SECURE_COOKIES", not TESTING)
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_PROXY") else None

# NCMEC CyberTipline. The test endpoint is the default; production needs NCMEC's onboarding.
CYBERTIP_URL = os.environ.get("CYBERTIP_URL", "https://exttest.cybertip.org/ispws")
CYBERTIP_USERNAME = os.environ.get("CYBERTIP_USERNAME", "")
CYBERTIP_PASSWORD = os.environ.get("CYBERTIP_PASSWORD", "")
CYBERTIP_TIMEOUT = envint("CYBERTIP_TIMEOUT", 60)
CYBERTIP_BACKOFF_SECONDS = envint("CYBERTIP_BACKOFF_SECONDS", 60)
CYBERTIP_MAX_ATTEMPTS = envint("CYBERTIP_MAX_ATTEMPTS", 20)
CYBERTIP_REQUIRE_APPROVAL = envbool("CYBERTIP_REQUIRE_APPROVAL", True)
# Reports from automation rules' decisions (matches to verified known material) are filed without a
# senior's approval unless this is on, or the rule's policy asks for a specialist's view first.
CYBERTIP_APPROVE_AUTOMATED = envbool("CYBERTIP_APPROVE_AUTOMATED", False)
# A confirmed reportable decision whose report is not filed this many hours later raises the
# "confirmed, not reported" alarm (queue page tile for seniors, an error in the log every 15 min).
CYBERTIP_REPORT_DEADLINE_HOURS = envint("CYBERTIP_REPORT_DEADLINE_HOURS", 24)
# 18 U.S.C. 2258A(h) as amended by the REPORT Act: keep a report's contents one year from submission.
CYBERTIP_HOLD_DAYS = max(365, envint("CYBERTIP_HOLD_DAYS", 365))
# Evidence in no hold and no open case is purged after this many days; the check re-hashes a batch a run.
EVIDENCE_RETENTION_DAYS = envint("EVIDENCE_RETENTION_DAYS", 90)
EVIDENCE_VERIFY_BATCH = envint("EVIDENCE_VERIFY_BATCH", 5000)
CYBERTIP_PLATFORM = os.environ.get("CYBERTIP_PLATFORM", "Example Chat")
CYBERTIP_REPORTER_FIRST_NAME = os.environ.get("CYBERTIP_REPORTER_FIRST_NAME", "Trust and Safety")
CYBERTIP_REPORTER_LAST_NAME = os.environ.get("CYBERTIP_REPORTER_LAST_NAME", "Team")
CYBERTIP_REPORTER_EMAIL = os.environ.get("CYBERTIP_REPORTER_EMAIL", "safety@example.org")
CYBERTIP_COMPANY_TEMPLATE = os.environ.get("CYBERTIP_COMPANY_TEMPLATE", "")
CYBERTIP_LEGAL_URL = os.environ.get("CYBERTIP_LEGAL_URL", "")

# Law-enforcement requests. Emergency disclosure requests owe a first answer within this many
# hours; a preservation hold lasts 90 days by default (18 U.S.C. 2703(f), renewable once).
LEGAL_EMERGENCY_SLA_HOURS = envint("LEGAL_EMERGENCY_SLA_HOURS", 1)
LEGAL_PRESERVATION_DAYS = envint("LEGAL_PRESERVATION_DAYS", 90)
LEGAL_DOCUMENT_MAX_BYTES = envint("LEGAL_DOCUMENT_MAX_BYTES", 20 * 1024 * 1024)

# Hash banks: uploads to a bank page are capped (bigger lists go through `manage.py import_hashes`).
# Which decisions add the case's items to the local bank is a policy effect (admin: Policies).
BANK_IMPORT_MAX_BYTES = envint("BANK_IMPORT_MAX_BYTES", 20 * 1024 * 1024)
BANK_IMPORT_LEASE_SECONDS = envint("BANK_IMPORT_LEASE_SECONDS", 15 * 60)  # an upload import past this: swept
# The workers' bank index (detection.matching): a snapshot under VAR_DIR that every worker on a host maps
# (one copy in memory, not one a worker), written once the perceptual hashes reach this many and again when
# the hashes added since pass this share of it. Bank changes reach the workers over Redis pub/sub at once;
# their poll every 2 s is the fallback.
BANK_INDEX_SNAPSHOT_MIN_ROWS = envint("BANK_INDEX_SNAPSHOT_MIN_ROWS", 10_000)
BANK_INDEX_SNAPSHOT_SHARE = float(os.environ.get("BANK_INDEX_SNAPSHOT_SHARE", "0.1"))
BANK_INDEX_SYNC = envbool("BANK_INDEX_SYNC", True)
# NCMEC hash sharing (`manage.py fetch_ncmec_hashes`); fetched daily by the cron when credentials are set.
NCMEC_HASH_API_URL = os.environ.get("NCMEC_HASH_API_URL", "https://report.cybertip.org/hashsharing")
NCMEC_HASH_API_USER = os.environ.get("NCMEC_HASH_API_USER", "")
NCMEC_HASH_API_PASSWORD = os.environ.get("NCMEC_HASH_API_PASSWORD", "")
NCMEC_HASH_API_TIMEOUT = envint("NCMEC_HASH_API_TIMEOUT", 60)
NCMEC_HASH_BANK = os.environ.get("NCMEC_HASH_BANK", "ncmec")
# The hash-quality loop: an active entry dismissed at least this many times, in at least this share
# of its outcomes, is flagged on its bank's page. Outcomes go back to NCMEC in runs of this many;
# NCMEC asks for a reason with negative feedback (its name or id, as NCMEC lists them).
BANK_ENTRY_FLAG_DISMISSALS = envint("BANK_ENTRY_FLAG_DISMISSALS", 3)
BANK_ENTRY_FLAG_SHARE = float(os.environ.get("BANK_ENTRY_FLAG_SHARE", "0.5"))
BANK_FEEDBACK_BATCH = envint("BANK_FEEDBACK_BATCH", 500)
NCMEC_FEEDBACK_REASON = os.environ.get("NCMEC_FEEDBACK_REASON", "")

# Statements of reasons (DSA Art. 17): how a restricted user may seek redress, as every statement says.
STATEMENT_APPEAL_URL = os.environ.get("STATEMENT_APPEAL_URL", "")
STATEMENT_APPEAL_INSTRUCTIONS = os.environ.get(
    "STATEMENT_APPEAL_INSTRUCTIONS",
    "You can ask us to review this decision through the service's complaint process within six months.")
STATEMENT_DISPUTE_SETTLEMENT_URL = os.environ.get("STATEMENT_DISPUTE_SETTLEMENT_URL", "")
# The Commission's DSA Transparency Database (Art. 24(5)). Nothing is sent while no token is set. Use the
# sandbox address and token the Commission gives at onboarding first, then production's.
DSA_TDB_URL = os.environ.get("DSA_TDB_URL", "https://transparency.dsa.ec.europa.eu/api/v1")
DSA_TDB_TOKEN = os.environ.get("DSA_TDB_TOKEN", "")
DSA_TDB_TIMEOUT = envint("DSA_TDB_TIMEOUT", 30)
DSA_TDB_BATCH = min(100, max(1, envint("DSA_TDB_BATCH", 100)))  # the database takes at most 100 a call
DSA_TDB_BACKOFF_SECONDS = envint("DSA_TDB_BACKOFF_SECONDS", 60)
DSA_PLATFORM_NAME = os.environ.get("DSA_PLATFORM_NAME", CYBERTIP_PLATFORM)
# Where restrictions apply: EU and EEA member states (ISO codes as the database spells them, Greece "GR").
DSA_TERRITORIAL_SCOPE = envlist(
    "DSA_TERRITORIAL_SCOPE",
    "AT,BE,BG,CY,CZ,DE,DK,EE,ES,FI,FR,GR,HR,HU,IE,IT,LT,LU,LV,MT,NL,PL,PT,RO,SE,SI,SK,IS,LI,NO")

# Appeals (DSA Art. 20): how long after a decision a user may appeal it, and how many appeals one account
# may lodge in 30 days (more are answered 429: repeated complaints are not a way to tie up reviewers).
APPEAL_WINDOW_DAYS = envint("APPEAL_WINDOW_DAYS", 183)
APPEAL_LIMIT_PER_30_DAYS = envint("APPEAL_LIMIT_PER_30_DAYS", 5)
APPEAL_MAX_CHARS = envint("APPEAL_MAX_CHARS", 5000)
APPEAL_ATTACHMENT_MAX_CHARS = envint("APPEAL_ATTACHMENT_MAX_CHARS", 20000)

# Logs go to stderr (the journal, under systemd). A deployment writes one JSON object a line
# (reviewconsole.logjson: time, level, logger, message, traceback); development, the demo, the
# benchmarks and the tests write plain lines for people. LOG_FORMAT=json or plain says otherwise.
LOG_FORMAT = os.environ.get("LOG_FORMAT") or ("plain" if DEBUG or DEMO or TESTING else "json")
if LOG_FORMAT not in {"json", "plain"}:
    raise RuntimeError(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "reviewconsole.logjson.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}
