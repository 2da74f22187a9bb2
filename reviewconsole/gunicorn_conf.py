"""Gunicorn settings for the web server: `gunicorn -c python:reviewconsole.gunicorn_conf`.

Like the console's own settings, each one comes from the environment. Arguments on gunicorn's
command line win over this file (`runconsole` passes --bind and --workers that way).
"""

import copy
import os

from django.conf import settings

from reviewconsole.env import envint, envlist

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewconsole.settings")

wsgi_app = "reviewconsole.wsgi:application"
proc_name = "reviewconsole-web"
# Loopback only: the TLS proxy in front is the one client. Any other address must be a private one
# that only the proxy reaches, since the proxy's headers are believed (see below).
bind = envlist("WEB_BIND", "127.0.0.1:8000")

# Sync workers, a request each: the proxy buffers slow clients and uploads, so a worker waits only on
# the database and on re-encoding evidence renditions (CPU). About two a core.
workers = envint("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1)
# A request still running after this long is killed (its worker restarted). The slowest pages are
# an upload of MAX_UPLOAD_BYTES and a legal request's PDF; the proxy's read timeout must be longer.
timeout = envint("WEB_TIMEOUT", 60)
graceful_timeout = envint("WEB_GRACEFUL_TIMEOUT", 30)
# Workers are replaced after this many requests (with jitter so they do not all restart at once),
# which bounds what a slow leak in any library can grow to.
max_requests = envint("WEB_MAX_REQUESTS", 2000)
max_requests_jitter = max_requests // 10

# HTTPS is known from X-Forwarded-Proto, the header settings.SECURE_PROXY_SSL_HEADER reads with
# BEHIND_PROXY on. Gunicorn takes it only from the proxy's addresses; Django takes it from whoever
# reaches the server, hence the loopback bind above. The other headers gunicorn would accept
# (X-Forwarded-Ssl, X-Forwarded-Protocol) are not ours: a client's copy passed on by the proxy must
# not be able to contradict it.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
# Nor may the proxy pass on SCRIPT_NAME or PATH_INFO: the console is not mounted under a prefix.
forwarder_headers = ""

# gunicornc's control socket only where one is asked for, so that two consoles on a machine (or a
# test run beside `make run`) do not fight over the default path in the home folder.
control_socket = os.environ.get("WEB_CONTROL_SOCKET", "")
control_socket_disable = not control_socket

# Gunicorn's own lines and the access log, written like the console's logs (JSON in a deployment)
# to stderr. The access log has the method and path but not the query string: searches name the
# accounts and groups being investigated.
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
access_log_format = '%(h)s %({x-forwarded-for}i)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": copy.deepcopy(settings.LOGGING["formatters"]),
    "handlers": {"console": copy.deepcopy(settings.LOGGING["handlers"]["console"])},
    "root": {"handlers": ["console"], "level": loglevel.upper()},
    "loggers": {
        # No level here: gunicorn sets it from `loglevel`, or from --log-level on its command line.
        "gunicorn.error": {"handlers": ["console"], "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
