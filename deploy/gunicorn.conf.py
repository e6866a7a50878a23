"""gunicorn's configuration for gradebench: `gunicorn -c deploy/gunicorn.conf.py grading.wsgi`.

Every setting reads an environment variable (documented in `.env.example`) with a default that
suits one machine behind a reverse proxy. Workers are processes, each with a few threads
(`gthread`): a page spends most of its time waiting for PostgreSQL, so threads serve more
reviewers per megabyte than processes, and processes use every core.
"""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise SystemExit(f"{name}={value!r} is not an integer") from None


bind = [os.environ.get("GUNICORN_BIND") or "127.0.0.1:8080"]
# Two processes per core and one more (gunicorn's advice), at most 8 by default.
workers = _int("GUNICORN_WORKERS", min(2 * (os.cpu_count() or 1) + 1, 8))
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4)
# A worker that has not reported in this long is restarted; requests run in threads, so a long
# export streaming out does not count against it.
timeout = _int("GUNICORN_TIMEOUT", 60)
# On SIGTERM, requests in flight get this long to finish.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Seconds an idle connection from the reverse proxy is kept open.
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Restart each worker after this many requests (plus jitter), so slow leaks never grow.
max_requests = _int("GUNICORN_MAX_REQUESTS", 5000)
max_requests_jitter = max_requests // 10
# Heartbeat files in memory, not on a disk that can stall (containers mount /dev/shm).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

# One line per request: "-" is stdout (journald, docker logs); a path writes a file.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms pid=%(p)s "%(f)s" "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL") or "info"
proc_name = "gradebench-web"

# gunicornc's control socket, one per installation (the default, in $HOME, is shared by every
# gunicorn of the user).
_var_dir = os.environ.get("GRADEBENCH_VAR_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "var"
)
control_socket = os.path.join(_var_dir, "gunicorn.ctl")

# The web process keeps each thread's database connection from request to request (checked
# before each request's first query; dropped when broken): opening one per request cost more
# than most pages at load. It holds up to workers x threads connections. Django reads this when
# it connects; DATABASE_CONN_MAX_AGE=0 in the environment opens one per request again.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "600")
