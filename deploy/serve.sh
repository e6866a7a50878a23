#!/usr/bin/env bash
# gradebench in production mode (what `make serve` runs): migrate the database, collect the
# static files, then run the web server (gunicorn, deploy/gunicorn.conf.py) and a Celery worker
# side by side against PostgreSQL (DATABASE_URL) and Redis (REDIS_URL), with DEBUG off.
#
#   deploy/serve.sh            setup, then web + worker until SIGTERM / Ctrl-C
#   deploy/serve.sh setup      migrate + collectstatic only
#   deploy/serve.sh web        gunicorn only (after setup)
#   deploy/serve.sh worker     the Celery worker only
#
# Variables come from the environment, and from the file ENV_FILE (default .env) for those the
# environment does not set; .env.example documents them. PYTHON is the interpreter (default
# .venv/bin/python). Stopping stops the worker first (its warm shutdown hands running
# generations back to the queue), then the web server (requests in flight finish).
set -euo pipefail
cd "$(dirname "$0")/.."

env_file="${ENV_FILE:-.env}"
if [[ -f "$env_file" ]]; then
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    name="${BASH_REMATCH[1]}"
    [[ -v "$name" ]] || export "$name=${BASH_REMATCH[2]}"
  done <"$env_file"
fi
export DEBUG=0

missing=()
for name in DATABASE_URL REDIS_URL SECRET_KEY; do
  [[ -n "${!name:-}" ]] || missing+=("$name")
done
if ((${#missing[@]})); then
  echo "serve: ${missing[*]} not set. Production mode runs against PostgreSQL (DATABASE_URL)" \
    "and Redis (REDIS_URL) with a secret key of its own (SECRET_KEY): set them in the" \
    "environment or in $env_file (see .env.example)." >&2
  exit 2
fi
case "$DATABASE_URL" in
  postgres://* | postgresql://* | pgsql://*) ;;
  *)
    echo "serve: DATABASE_URL must be a PostgreSQL URL (postgres://user:password@host:5432/name);" \
      "SQLite serves one machine: use \`make demo\` for that." >&2
    exit 2
    ;;
esac
case "$REDIS_URL" in
  redis://* | rediss://* | unix://*) ;;
  *)
    echo "serve: REDIS_URL must be a Redis URL (redis://host:6379/0)." >&2
    exit 2
    ;;
esac

python="${PYTHON:-.venv/bin/python}"

setup() {
  "$python" manage.py migrate --noinput
  "$python" manage.py collectstatic --noinput --verbosity 0
  "$python" manage.py check --deploy
}
web() { exec "$python" -m gunicorn -c deploy/gunicorn.conf.py grading.wsgi; }
worker() { exec "$python" -m celery -A grading worker --loglevel INFO; }

case "${1:-all}" in
  setup) setup; exit ;;
  web) web ;;
  worker) worker ;;
  all) ;;
  *) echo "usage: $0 [setup|web|worker]" >&2; exit 2 ;;
esac

setup
# Each in a session of its own, so a Ctrl-C meant for this script does not reach them before
# it is their turn to stop.
setsid "$python" -m gunicorn -c deploy/gunicorn.conf.py grading.wsgi &
web_pid=$!
setsid "$python" -m celery -A grading worker --loglevel INFO &
worker_pid=$!

stop() {
  trap '' TERM INT HUP
  local status="${1:-0}"
  kill -TERM "$worker_pid" 2>/dev/null || true
  wait "$worker_pid" 2>/dev/null || true
  kill -TERM "$web_pid" 2>/dev/null || true
  wait "$web_pid" 2>/dev/null || true
  exit "$status"
}
trap 'stop 0' TERM INT HUP
status=0
wait -n "$web_pid" "$worker_pid" || status=$?
echo "serve: a process exited (status $status); stopping the other" >&2
stop "$((status == 0 ? 1 : status))"
