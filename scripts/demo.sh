#!/usr/bin/env bash
# The demo: migrate, start the five provider simulators and Telegram's Bot API simulator (the demo merchant's
# alerts), seed (one channel account per simulator), then run a Celery worker with beat and the web server. Ctrl-C
# stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-1}"
PY=.venv/bin/python
WEB="${WEB:-127.0.0.1:8000}"
export CARDSHOP_PUBLIC_URL="${CARDSHOP_PUBLIC_URL:-http://$WEB}"
SIM_DIR=var/sim
# channel:port. Every port can be moved by its variable; each simulator keeps its merchant keys in
# $SIM_DIR/<channel>.json across restarts.
EPAY_PORT="${EPAY_PORT:-8001}"
ALIPAY_PORT="${ALIPAY_PORT:-8002}"
WECHATPAY_PORT="${WECHATPAY_PORT:-8003}"
STRIPE_PORT="${STRIPE_PORT:-8004}"
BANKGW_PORT="${BANKGW_PORT:-8005}"
TELEGRAM_PORT="${TELEGRAM_PORT:-8006}"
SIMULATORS="epay:$EPAY_PORT alipay:$ALIPAY_PORT wechatpay:$WECHATPAY_PORT stripe:$STRIPE_PORT bankgw:$BANKGW_PORT"

# Check every port before starting or migrating anything: a port taken by another program would otherwise show
# up later as a simulator that "did not start" or a runserver traceback.
web_host=${WEB%:*}; web_port=${WEB##*:}
[ "$web_host" = "$WEB" ] && web_host=127.0.0.1
web_host=${web_host#[}; web_host=${web_host%]}
port_busy() { # host port -> 0 if something already listens or the port cannot be bound
  "$PY" - "$1" "$2" <<'PYCODE'
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: a TIME_WAIT left by the last run is free
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(0)
sys.exit(1)
PYCODE
}
taken=0
for check in "WEB:$web_host:$web_port" "EPAY_PORT:127.0.0.1:$EPAY_PORT" "ALIPAY_PORT:127.0.0.1:$ALIPAY_PORT" \
  "WECHATPAY_PORT:127.0.0.1:$WECHATPAY_PORT" "STRIPE_PORT:127.0.0.1:$STRIPE_PORT" "BANKGW_PORT:127.0.0.1:$BANKGW_PORT" \
  "TELEGRAM_PORT:127.0.0.1:$TELEGRAM_PORT"; do
  var=${check%%:*}; rest=${check#*:}; host=${rest%:*}; port=${rest##*:}
  if port_busy "$host" "$port"; then
    taken=1
    who=$(ss -ltnpH "sport = :$port" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -1)
    echo "Port $port ($var) on $host is already in use${who:+ by $who}." >&2
    [ -n "$who" ] || echo "  (\`ss -ltnp\` run as root shows which program holds it)" >&2
  fi
done
if [ "$taken" = 1 ]; then
  echo "Stop the program holding it, or choose other ports, e.g.:" >&2
  echo "  WEB=127.0.0.1:8100 EPAY_PORT=8101 ALIPAY_PORT=8102 WECHATPAY_PORT=8103 STRIPE_PORT=8104 BANKGW_PORT=8105" \
    "TELEGRAM_PORT=8106 make run" >&2
  exit 2
fi
mkdir -p "$SIM_DIR"

pids=()
# Stop what we started: TERM, then up to 10 s for Celery's warm shutdown, then QUIT (its cold shutdown) and KILL,
# so a worker stuck in a warm shutdown never outlives the demo and keeps polling in the background.
cleanup() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 50); do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break; sleep 0.2
  done
  kill -QUIT "${pids[@]}" 2>/dev/null || true; sleep 0.5; kill -KILL "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
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
$PY -m cardshop.simulators.telegram_bot --port "$TELEGRAM_PORT" --account-file "$SIM_DIR/telegram.json" \
  > "$SIM_DIR/telegram.log" 2>&1 &
pids+=($!)
export CARDSHOP_TELEGRAM_API="http://127.0.0.1:$TELEGRAM_PORT"
# Each simulator (re)writes its account file with this run's URL once it listens.
for entry in $SIMULATORS telegram:$TELEGRAM_PORT; do
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
  Merchant    : http://$WEB/merchant/   (the demo merchant's console; login printed above on first seed)
  Order lookup: http://$WEB/orders/lookup/
  Merchant API: http://$WEB/api/v1/   (docs: http://$WEB/api/docs/; keys: Admin > API keys)
  Simulators  : $SIMULATORS (ports on 127.0.0.1; cashier pages open from the pay page)
  Telegram    : the demo merchant's sale, refund and low-stock alerts: $SIM_DIR/telegram.log
  Stripe test cards: 4242 4242 4242 4242 pays, 4000 0000 0000 0002 is declined (any future expiry, any CVC)
  Logs: var/celery.log, $SIM_DIR/<channel>.log; mails: var/mail/

MSG
$PY manage.py runserver "$WEB" --noreload
