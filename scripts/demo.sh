#!/usr/bin/env bash
# The demo: migrate, start the five provider simulators, seed (one channel account per simulator), then run a
# Celery worker with beat and the web server. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-1}"
PY=.venv/bin/python
WEB="${WEB:-127.0.0.1:8000}"
export CARDSHOP_PUBLIC_URL="${CARDSHOP_PUBLIC_URL:-http://$WEB}"
SIM_DIR=var/sim
mkdir -p "$SIM_DIR"
# channel:port. Each simulator keeps its merchant keys in $SIM_DIR/<channel>.json across restarts.
SIMULATORS="epay:8001 alipay:8002 wechatpay:8003 stripe:8004 bankgw:8005"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

$PY manage.py migrate --noinput -v0

for entry in $SIMULATORS; do
  code=${entry%%:*}; port=${entry##*:}
  extra=()
  [ "$code" = stripe ] && extra=(--webhook-url "$CARDSHOP_PUBLIC_URL/notify/stripe/")
  $PY -m payments.simulators."$code" --port "$port" --account-file "$SIM_DIR/$code.json" "${extra[@]}" \
    > "$SIM_DIR/$code.log" 2>&1 &
  pids+=($!)
done
# Each simulator (re)writes its account file with this run's URL once it listens.
for entry in $SIMULATORS; do
  code=${entry%%:*}; port=${entry##*:}
  for _ in $(seq 100); do
    if [ -s "$SIM_DIR/$code.json" ] && grep -q ":$port" "$SIM_DIR/$code.json"; then break; fi
    sleep 0.1
  done
  grep -q ":$port" "$SIM_DIR/$code.json" || { echo "the $code simulator did not start: $SIM_DIR/$code.log"; exit 1; }
done
$PY manage.py seed_demo --sim-accounts "$SIM_DIR"

.venv/bin/celery -A cardshop worker -B -c 2 --loglevel=INFO > var/celery.log 2>&1 &
pids+=($!)

cat <<MSG

  Storefront  : http://$WEB/
  Admin       : http://$WEB/admin/   (login printed above on first seed)
  Order lookup: http://$WEB/orders/lookup/
  Simulators  : $SIMULATORS (ports on 127.0.0.1; cashier pages open from the pay page)
  Stripe test cards: 4242 4242 4242 4242 pays, 4000 0000 0000 0002 is declined (any future expiry, any CVC)
  Logs: var/celery.log, $SIM_DIR/<channel>.log; mails: var/mail/

MSG
$PY manage.py runserver "$WEB" --noreload
