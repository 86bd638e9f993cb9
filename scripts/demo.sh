#!/usr/bin/env bash
# The demo: migrate, seed, then run the epay simulator, a Celery worker with beat, and the web server.
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-1}"
PY=.venv/bin/python
mkdir -p var
EPAY_PORT="${EPAY_PORT:-8001}"
WEB="${WEB:-127.0.0.1:8000}"
export CARDSHOP_PUBLIC_URL="${CARDSHOP_PUBLIC_URL:-http://$WEB}"

$PY manage.py migrate --noinput -v0
$PY manage.py seed_demo --epay-url "http://127.0.0.1:$EPAY_PORT" --merchants-file var/epay-merchants.json

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

$PY -m payments.simulators.epay --port "$EPAY_PORT" --merchants-file var/epay-merchants.json > var/epay-simulator.log 2>&1 &
pids+=($!)
.venv/bin/celery -A cardshop worker -B -c 2 --loglevel=INFO > var/celery.log 2>&1 &
pids+=($!)

cat <<MSG

  Storefront : http://$WEB/
  Admin      : http://$WEB/admin/   (login printed above on first seed)
  Order lookup: http://$WEB/orders/lookup/
  epay simulator: http://127.0.0.1:$EPAY_PORT/  (cashier pages open from the pay page)
  Logs: var/celery.log, var/epay-simulator.log; mails: var/mail/

MSG
$PY manage.py runserver "$WEB" --noreload
