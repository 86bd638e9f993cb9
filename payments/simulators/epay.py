"""Loopback simulator of the *provider side* of the 易支付 (epay / 彩虹易支付) protocol.

It plays the payment panel a merchant integrates with: ``/mapi.php`` and
``/submit.php`` create trades, ``/cashier/<trade_no>`` is a one-button cashier,
paying sends the signed async notify to the merchant, ``/api.php?act=order``
answers order queries and ``/api.php?act=orders`` pages through the merchant's
order list (newest trade_no first, ``limit`` at most 50, ``offset`` or ``page``),
which is all the statement these panels have. Signing is implemented here on
purpose, independently of our own adapter, so tests exercise the adapter against a
second implementation.

The panel's clock is Asia/Shanghai (彩虹易支付 sets PHP's date.timezone so):
``addtime`` / ``endtime`` and the ``YmdHis`` prefix of trade_no are Shanghai time.
Tests move it with the plain attribute ``clock`` (a callable returning an aware
datetime; None = now).

Order list (``act=orders``) answers, as the real panel writes them::

    {"code": 1, "msg": "查询订单记录成功！", "count": n, "data": [row, ...]}   (data is null when empty)

Rows carry trade_no, out_trade_no, type, pid, addtime, endtime, name, money, param,
buyer, status (0 unpaid, 1 paid, 2 refunded). With ``orders_full_rows = True`` the
panel answers like the forks that list the whole ``pre_order`` row: also
api_trade_no, realmoney, getmoney (what the merchant keeps: money minus the fee at
``fee_rate_bp``) and refundmoney.

``/api.php?act=query`` answers the merchant's record, ``money`` being its balance: the getmoney of every paid
order (``merchant_money``); a refunded order gave its getmoney back. ``tamper_merchant_query`` writes fields over
that answer (another pid, a money that is not an amount).

Statement discrepancies a test injects, plain attributes read on every act=orders:

- ``statement_omit``: set of out_trade_no left off the list.
- ``statement_override``: {out_trade_no: {field: value}} written over the row
  (``money`` = the amount, ``getmoney`` = amount minus fee, ``status``, ``endtime``...).
- ``statement_duplicate``: set of out_trade_no listed twice (adjacent).
- ``statement_extra``: rows for trades the merchant never created
  (``statement_add_unknown`` builds one).
- ``statement_corrupt``: act=orders answers a truncated (malformed) JSON body.
- ``statement_synthetic(day, n)``: the list becomes n generated paid orders completed
  on ``day`` (made row by row on request, nothing stored), for benchmarks.
- ``statement_reset()`` puts all of these back (the recorded trades, listed as they are).

Used by tests, benchmarks and the demo; runnable as
``python -m payments.simulators.epay --port 8001 --merchant PID:KEY``.
Must not import ``payments.channels`` (or anything Django): it is the other side.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import html
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from payments.simulators import base
from payments.simulators.base import Faults, LoopbackServer, NotifyRequest, SimAccount

logger = logging.getLogger(__name__)

PAY_TYPES = {"alipay", "wxpay", "qqpay"}
REQUIRED = ("pid", "type", "out_trade_no", "notify_url", "name", "money")
TRADE_FIELDS = REQUIRED[2:] + ("pid", "type", "return_url", "param", "clientip")
NOTIFY_FIELDS = ("pid", "trade_no", "out_trade_no", "type", "name", "money", "param")
QUERY_FIELDS = NOTIFY_FIELDS + ("addtime", "endtime", "status")
MONEY_RE = re.compile(r"^\d+(\.\d{1,2})?$")
NOTIFY_TIMEOUT = 5.0
SHANGHAI = timezone(timedelta(hours=8))  # no DST in China: a fixed offset is the zone
STAMP = "%Y-%m-%d %H:%M:%S"
# act=orders: the real panel's columns (api.php of 彩虹易支付); full rows add api_trade_no, realmoney, getmoney,
# refundmoney, as the forks answering the whole pre_order row do.
ORDER_ROW_FIELDS = ("trade_no", "out_trade_no", "type", "pid", "addtime", "endtime", "name", "money", "param")
ORDERS_LIMIT_MAX = 50


class EpayError(Exception):
    """A request the panel rejects; the message goes back to the merchant verbatim."""

    def __init__(self, msg: str, code: int = -1) -> None:
        super().__init__(msg)
        self.code = code


def _int(value: str | None, default: int) -> int:
    """PHP's intval: leading digits, else 0; absent -> the default."""
    if value is None:
        return default
    m = re.match(r"\s*[-+]?\d+", value)
    return int(m.group()) if m else 0


def _now() -> str:
    return datetime.now(SHANGHAI).strftime(STAMP)


def _cents(money: str) -> int:
    whole, _, frac = money.partition(".")
    return int(whole) * 100 + int(frac.ljust(2, "0") or 0)


def _yuan(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _unsigned(params: dict) -> dict[str, str]:
    return {
        str(k): str(v) for k, v in params.items() if k not in ("sign", "sign_type") and v is not None and str(v) != ""
    }


class EpaySimulator(LoopbackServer):
    code = "epay"
    # epay notifies carry no currency, no timestamp and only TRADE_SUCCESS: those variants do not exist here.
    notify_variants = frozenset(
        {base.VALID, base.BAD_SIGNATURE, base.WRONG_AMOUNT, base.WRONG_MERCHANT, base.UNKNOWN_ORDER}
    )

    def __init__(
        self,
        merchants: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        notify_method: str = "GET",
        merchants_file: str | Path | None = None,
    ) -> None:
        self._merchants: dict[str, str] = dict(merchants or {})
        self._merchants_file = Path(merchants_file) if merchants_file else None
        self._address = (host, port)
        self.handler_class = _Handler
        self.notify_method = notify_method.upper()
        self._lock = threading.Lock()
        self._trades: dict[str, dict[str, Any]] = {}
        self._by_out: dict[tuple[str, str], str] = {}
        # Signed request params minus the signature, to tell an idempotent retry
        # from a conflicting reuse of the same out_trade_no.
        self._fingerprints: dict[str, dict[str, str]] = {}
        # Random start keeps trade_nos distinct across restarts (demo DBs persist).
        self._counter = random.randint(10**8, 9 * 10**8)
        self.faults = Faults()
        self._refunds: dict[tuple[str, str], dict[str, Any]] = {}
        self._account: SimAccount | None = None
        self.clock: Callable[[], datetime] | None = None
        # The account's fee rate, in basis points, behind getmoney on full rows.
        self.fee_rate_bp = 0
        self.orders_full_rows = False
        self.statement_omit: set[str] = set()
        self.statement_override: dict[str, dict[str, Any]] = {}
        self.statement_duplicate: set[str] = set()
        self.statement_extra: list[dict[str, Any]] = []
        self.statement_corrupt = False
        self.tamper_merchant_query: dict[str, Any] = {}  # fields written over the act=query answer
        self._synthetic: tuple[date, int] | None = None
        self._reload_merchants()

    def now(self) -> datetime:
        """The panel's clock, in Shanghai time."""
        return (self.clock() if self.clock else datetime.now()).astimezone(SHANGHAI)

    # ---- merchants & signing --------------------------------------------
    def add_merchant(self, pid: str, key: str) -> None:
        with self._lock:
            self._merchants[str(pid)] = key

    def _reload_merchants(self) -> None:
        if not self._merchants_file:
            return
        try:
            data = json.loads(self._merchants_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("cannot read %s: %s", self._merchants_file, exc)
            return
        with self._lock:
            self._merchants.update({str(k): str(v) for k, v in data.items()})

    def _key_for(self, pid: str) -> str | None:
        with self._lock:
            key = self._merchants.get(pid)
        # The demo seed may register merchants after we started: re-read on a miss.
        if key is None and self._merchants_file:
            self._reload_merchants()
            with self._lock:
                key = self._merchants.get(pid)
        return key

    @staticmethod
    def sign(params: dict, key: str) -> str:
        raw = "&".join(f"{k}={v}" for k, v in sorted(_unsigned(params).items())) + key
        return hashlib.md5(raw.encode("utf-8")).hexdigest()

    def _verify(self, params: dict[str, str]) -> None:
        key = self._key_for(params.get("pid", ""))
        if key is None:
            raise EpayError("商户不存在")
        if params.get("sign_type", "MD5").upper() != "MD5":
            raise EpayError("签名类型不支持")
        given = params.get("sign", "").lower().encode()
        if not hmac.compare_digest(given, self.sign(params, key).encode()):
            raise EpayError("签名校验失败")

    # ---- trades ----------------------------------------------------------
    def create_trade(self, params: dict[str, str]) -> dict[str, Any]:
        """Validate a signed merchant request and create (or replay) its trade."""
        missing = [f for f in REQUIRED if not params.get(f)]
        if missing:
            raise EpayError(f"缺少参数 {','.join(missing)}")
        self._verify(params)
        if params["type"] not in PAY_TYPES:
            raise EpayError("支付方式不存在")
        if not MONEY_RE.match(params["money"]) or Decimal(params["money"]) <= 0:
            raise EpayError("金额不合法")
        fingerprint, out_key = (
            _unsigned(params),
            (params["pid"], params["out_trade_no"]),
        )
        with self._lock:
            if existing := self._by_out.get(out_key):
                if self._fingerprints[existing] != fingerprint:
                    raise EpayError("订单号已存在")
                return copy.deepcopy(self._trades[existing])
            self._counter += 1
            # The panel's own recipe: date("YmdHis") and five digits, so the list's trade_no order is time order.
            now = self.now()
            trade_no = now.strftime("%Y%m%d%H%M%S") + f"{self._counter % 100000:05d}"
            trade = {"trade_no": trade_no}
            trade.update({f: params.get(f, "") for f in TRADE_FIELDS})
            trade.update(status=0, addtime=now.strftime(STAMP), endtime=None, notify_attempts=[])
            self._trades[trade_no] = trade
            self._by_out[out_key] = trade_no
            self._fingerprints[trade_no] = fingerprint
            return copy.deepcopy(trade)

    def trade(self, *, out_trade_no: str | None = None, trade_no: str | None = None) -> dict | None:
        with self._lock:
            if trade_no is None and out_trade_no is not None:
                # out_trade_no is only unique per pid; without a pid, first match wins.
                matches = (t for (_, o), t in self._by_out.items() if o == out_trade_no)
                trade_no = next(matches, None)
            found = self._trades.get(trade_no or "")
            return copy.deepcopy(found) if found else None

    def _require(self, trade_no: str) -> dict:
        found = self.trade(trade_no=trade_no)
        if found is None:
            raise KeyError(trade_no)
        return found

    def trade_for(self, out_trade_no: str) -> dict | None:
        return self.trade(out_trade_no=out_trade_no)

    def _trade_known(self, out_trade_no: str) -> dict:
        found = self.trade(out_trade_no=out_trade_no)
        if found is None:
            raise KeyError(out_trade_no)
        return found

    # ---- the simulator contract (payments/simulators/base.py) -------------
    def account(self, *, webhook_url: str = "") -> SimAccount:
        if self._account is None:
            pid, key = str(random.randint(1000, 9999)), "".join(random.choices("abcdefghjkmnpqrstuvwxyz23456789", k=32))
            self.add_merchant(pid, key)
            self._account = SimAccount(pid, self.base_url, "CNY", {"key": key})
        return self._account

    def pay(self, out_trade_no: str) -> None:
        """The buyer pays; the notify obeys the fault switches and a dead endpoint does not undo the payment."""
        trade_no = self._trade_known(out_trade_no)["trade_no"]
        self._mark_paid(trade_no)
        if self.faults.take("drop_notify"):
            return
        times = 2 if self.faults.take("duplicate_notify") else 1

        def deliver() -> None:
            time.sleep(self.faults.notify_delay)
            for _ in range(times):
                try:
                    self.send_notify(trade_no)
                except requests.RequestException as exc:
                    logger.warning("notify for %s failed: %r", out_trade_no, exc)

        if self.faults.notify_delay:
            threading.Thread(target=deliver, daemon=True).start()
        else:
            deliver()

    def notify_request(
        self, out_trade_no: str, *, variant: str = base.VALID, amount: str | None = None
    ) -> NotifyRequest:
        """A paid notify, forged as `variant` says; `amount` replaces `money` as written, still signed."""
        trade = self._trade_known(out_trade_no)
        overrides: dict[str, str] = {} if amount is None else {"money": amount}
        if variant == base.WRONG_AMOUNT:
            overrides["money"] = str(Decimal(trade["money"]) + Decimal("0.01"))
        elif variant == base.WRONG_MERCHANT:
            other = "9" + trade["pid"]
            self.add_merchant(other, self._key_for(trade["pid"]) or "")  # same key: only the pid differs
            overrides["pid"] = other
        elif variant == base.UNKNOWN_ORDER:
            overrides["out_trade_no"] = trade["out_trade_no"] + "X"
        elif variant not in (base.VALID, base.BAD_SIGNATURE):
            raise ValueError(f"epay has no {variant} notify")
        params = self.notify_params(trade["trade_no"], **overrides)
        if variant == base.BAD_SIGNATURE:
            params["sign"] = ("0" if params["sign"][0] != "0" else "1") + params["sign"][1:]
        return NotifyRequest(method="GET", body=b"", headers={}, query=params)

    # ---- refunds ---------------------------------------------------------
    def refund(self, params: dict[str, str]) -> dict[str, Any]:
        """``api.php?act=refund``: full or partial refund of a paid trade, idempotent on out_refund_no."""
        pid = self._check_key(params)
        out_refund_no = params.get("out_refund_no", "")
        with self._lock:
            trade_no = params.get("trade_no") or self._by_out.get((pid, params.get("out_trade_no", "")))
        found = self.trade(trade_no=trade_no or "")
        if found is None or found["pid"] != pid:
            raise EpayError("订单号不存在")
        if not out_refund_no:
            raise EpayError("缺少参数 out_refund_no")
        with self._lock:
            if existing := self._refunds.get((pid, out_refund_no)):
                if existing["trade_no"] != found["trade_no"] or existing["money"] != params.get("money"):
                    raise EpayError("退款单号已存在")
                return {"code": 1, "msg": "退款成功", **existing}
            trade = self._trades[found["trade_no"]]
            if trade["status"] != 1:
                raise EpayError("订单未支付或已退款")
            if not MONEY_RE.match(params.get("money", "")) or Decimal(params["money"]) != Decimal(trade["money"]):
                raise EpayError("退款金额不正确")
            self._counter += 1
            record = {
                "out_refund_no": out_refund_no,
                "refund_no": "RF" + str(self._counter),
                "trade_no": trade["trade_no"],
                "out_trade_no": trade["out_trade_no"],
                "money": params["money"],
                "status": 1,
            }
            self._refunds[(pid, out_refund_no)] = record
            trade["status"] = 2  # refunded
            trade["refundmoney"] = params["money"]
            return {"code": 1, "msg": "退款成功", **record}

    def refund_query(self, params: dict[str, str]) -> dict[str, Any]:
        pid = self._check_key(params)
        with self._lock:
            record = self._refunds.get((pid, params.get("out_refund_no", "")))
        if record is None:
            raise EpayError("退款记录不存在")
        return {"code": 1, "msg": "查询成功", **record}

    def _check_key(self, params: dict[str, str]) -> str:
        pid = params.get("pid", "")
        key = self._key_for(pid)
        if key is None or not hmac.compare_digest(params.get("key", "").encode(), key.encode()):
            raise EpayError("KEY校验失败")
        return pid

    # ---- notify ----------------------------------------------------------
    def notify_params(self, trade_no: str, **overrides: Any) -> dict[str, str]:
        trade = self._require(trade_no)
        params = {f: trade[f] for f in NOTIFY_FIELDS}
        params["trade_status"] = "TRADE_SUCCESS"
        params.update({k: str(v) for k, v in overrides.items()})
        params["sign"] = self.sign(params, self._key_for(trade["pid"]) or "")
        params["sign_type"] = "MD5"
        return params

    def send_notify(self, trade_no: str, params: dict | None = None, method: str | None = None) -> requests.Response:
        url = self._require(trade_no)["notify_url"]
        params = params if params is not None else self.notify_params(trade_no)
        method = (method or self.notify_method).upper()
        payload = {"data": params} if method == "POST" else {"params": params}
        attempt: dict[str, Any] = {"url": url, "method": method, "at": _now()}
        attempt.update(params=dict(params), status_code=None, response_text="")
        attempt.update(acknowledged=False, error=None)
        try:
            resp = requests.request(method, url, timeout=NOTIFY_TIMEOUT, **payload)
            attempt.update(status_code=resp.status_code, response_text=resp.text)
            # Panels only stop retrying on a literal "success" body.
            attempt["acknowledged"] = resp.ok and resp.text.strip() == "success"
            return resp
        except requests.RequestException as exc:
            attempt["error"] = repr(exc)
            raise
        finally:
            with self._lock:
                self._trades[trade_no]["notify_attempts"].append(attempt)

    def _mark_paid(self, trade_no: str) -> None:
        self._require(trade_no)
        with self._lock:
            trade = self._trades[trade_no]
            if trade["status"] == 0:
                trade["status"], trade["endtime"] = 1, self.now().strftime(STAMP)

    def pay_trade(self, trade_no: str) -> requests.Response:
        """Pay by the panel's trade_no and send one notify, raising if the merchant cannot be reached."""
        self._mark_paid(trade_no)
        # Notify outside the lock: the merchant may query api.php while handling it.
        return self.send_notify(trade_no)

    # ---- query API -------------------------------------------------------
    def query(self, params: dict[str, str]) -> dict[str, Any]:
        """Answer ``api.php?act=order`` the way the real panel does."""
        if params.get("act") != "order":
            raise EpayError("不支持的操作")
        pid = self._check_key(params)
        trade_no = params.get("trade_no")
        with self._lock:
            trade_no = trade_no or self._by_out.get((pid, params.get("out_trade_no", "")))
        found = self.trade(trade_no=trade_no or "")
        if found is None or found["pid"] != pid:
            raise EpayError("订单号不存在")
        answer = {"code": 1, "msg": "查询订单号成功！"}
        return {**answer, **{f: found[f] for f in QUERY_FIELDS}, "buyer": ""}

    # ---- the merchant (balance) ----------------------------------------------
    def merchant_money(self, pid: str) -> int:
        """The merchant's balance at the panel (``money``), in fen: what each paid order left it (getmoney: the
        amount less the fee at ``fee_rate_bp``); a refunded order took its getmoney back with it."""
        with self._lock:
            paid = [_cents(t["money"]) for t in self._trades.values() if t["pid"] == pid and t["status"] == 1]
        return sum(cents - self._fee(cents) for cents in paid)

    def merchant_query(self, params: dict[str, str]) -> dict[str, Any]:
        """``api.php?act=query&pid=&key=``: the merchant's own record as 彩虹易支付 answers it (pid, key, active,
        money = the balance, type = the settle way, account / username = where settlements go, order counts)."""
        pid = self._check_key(params)
        with self._lock:
            trades = [t for t in self._trades.values() if t["pid"] == pid]
        today = self.now().strftime("%Y-%m-%d")
        yesterday = (self.now() - timedelta(days=1)).strftime("%Y-%m-%d")
        return {
            "code": 1,
            "pid": int(pid) if pid.isdigit() else pid,
            "key": params["key"],
            "active": 1,
            "money": _yuan(self.merchant_money(pid)),
            "type": 1,
            "account": "sim***@example.com",
            "username": "模拟商户",
            "orders": len(trades),
            "order_today": sum(1 for t in trades if t["addtime"].startswith(today)),
            "order_lastday": sum(1 for t in trades if t["addtime"].startswith(yesterday)),
            **self.tamper_merchant_query,
        }

    # ---- order list (the statement) ---------------------------------------
    def orders(self, params: dict[str, str]) -> dict[str, Any]:
        """``api.php?act=orders``: one page of the merchant's orders, newest trade_no first, as the panel
        answers it (its SQL is ``ORDER BY trade_no DESC LIMIT offset,limit``; forks take ``page`` instead)."""
        pid = params.get("pid", "")
        key = self._key_for(pid)
        if key is None:
            raise EpayError("商户ID不存在", -3)
        if not hmac.compare_digest(params.get("key", "").encode(), key.encode()):
            raise EpayError("商户密钥错误", -3)
        limit = _int(params.get("limit"), 10)
        limit = 10 if limit < 1 else min(limit, ORDERS_LIMIT_MAX)
        if "offset" in params:
            offset = max(_int(params["offset"], 0), 0)
        else:
            offset = (max(_int(params.get("page"), 1), 1) - 1) * limit
        status = params.get("status")
        if self._synthetic is not None:
            page = self._synthetic_rows(pid, offset, limit)
        else:
            rows = self._order_rows(pid)
            if status is not None:
                rows = [r for r in rows if str(r["status"]) == str(_int(status, 0))]
            page = rows[offset : offset + limit]
        # PHP leaves $data unset on an empty page: json_encode writes null.
        return {"code": 1, "msg": "查询订单记录成功！", "count": len(page), "data": page or None}

    def _order_rows(self, pid: str) -> list[dict[str, Any]]:
        with self._lock:
            trades = [copy.deepcopy(t) for t in self._trades.values() if t["pid"] == pid]
            extra = [{**row, "pid": row.get("pid", pid)} for row in self.statement_extra]
            omit, override, twice = (
                set(self.statement_omit),
                dict(self.statement_override),
                set(self.statement_duplicate),
            )
        rows = [self._order_row(t) for t in trades] + [self._fill_row(r) for r in extra]
        rows = [r for r in rows if r["out_trade_no"] not in omit]
        for row in rows:
            row.update(override.get(row["out_trade_no"], {}))
        rows.sort(key=lambda r: (len(r["trade_no"]), r["trade_no"]), reverse=True)
        listed: list[dict[str, Any]] = []
        for row in rows:
            listed.extend([row, dict(row)] if row["out_trade_no"] in twice else [row])
        return listed

    def _order_row(self, trade: dict[str, Any]) -> dict[str, Any]:
        row = {f: trade.get(f) for f in ORDER_ROW_FIELDS}
        row.update(buyer="", status=trade["status"])
        if self.orders_full_rows:
            cents = _cents(trade["money"])
            paid = trade["status"] != 0
            row.update(
                api_trade_no="API" + trade["trade_no"] if paid else None,
                realmoney=trade["money"] if paid else None,
                getmoney=_yuan(cents - self._fee(cents)) if paid else None,
                refundmoney=trade.get("refundmoney"),
            )
        return row

    def _fee(self, cents: int) -> int:
        return (cents * self.fee_rate_bp + 5000) // 10000  # half up, to the fen

    def _fill_row(self, row: dict[str, Any]) -> dict[str, Any]:
        filled = {f: None for f in ORDER_ROW_FIELDS}
        filled.update(type="alipay", name="unknown", buyer="", status=1)
        filled.update(row)
        filled["addtime"] = filled.get("addtime") or filled.get("endtime")
        return filled

    def statement_add_unknown(
        self, out_trade_no: str, trade_no: str, money: str, *, endtime: str, fee: str = "0.00", status: int = 1
    ) -> None:
        """List a paid order the merchant never created (its pid is the account's at serving time)."""
        row: dict[str, Any] = {"out_trade_no": out_trade_no, "trade_no": trade_no, "money": money}
        row.update(endtime=endtime, status=status)
        if self.orders_full_rows:
            row.update(getmoney=_yuan(_cents(money) - _cents(fee)), realmoney=money, refundmoney=None)
        with self._lock:
            self.statement_extra.append(row)

    def statement_synthetic(self, day: date, n: int) -> dict[str, int]:
        """From now on act=orders lists n paid orders completed on `day` (Shanghai), generated row by row on
        request and never stored, in place of the recorded trades. Returns their count, amount and fee sums
        (in fen) for the test to check the parsed lines against."""
        amount = fee = 0
        for j in range(n):
            cents = self._synthetic_cents(j)
            amount += cents
            fee += self._fee(cents) if self.orders_full_rows else 0
        with self._lock:
            self._synthetic = (day, n)
        return {"count": n, "amount_minor": amount, "fee_minor": fee}

    def statement_reset(self) -> None:
        with self._lock:
            self.statement_omit, self.statement_override, self.statement_duplicate = set(), {}, set()
            self.statement_extra, self.statement_corrupt, self._synthetic = [], False, None

    @staticmethod
    def _synthetic_cents(j: int) -> int:
        return 100 + (j * 37) % 9900

    def _synthetic_rows(self, pid: str, offset: int, limit: int) -> list[dict[str, Any]]:
        day, n = self._synthetic or (date.today(), 0)
        start = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
        width = max(5, len(str(n - 1)))
        page = []
        for i in range(offset, min(offset + limit, n)):
            j = n - 1 - i  # newest first
            at = (start + timedelta(seconds=j * 86400 // n)).strftime(STAMP)
            stamp = at.replace("-", "").replace(" ", "").replace(":", "")
            trade = {"trade_no": f"{stamp}{j:0{width}d}", "out_trade_no": f"SYN{day:%Y%m%d}{j:07d}", "pid": pid}
            trade.update(type="alipay", name="synthetic", money=_yuan(self._synthetic_cents(j)), param="")
            trade.update(addtime=at, endtime=at, status=1)
            page.append(self._order_row(trade))
        return page


CASHIER_HTML = """<!doctype html><html><head><meta charset="utf-8">
<title>Epay cashier</title></head><body><h1>Epay cashier</h1>
<p>商品: <span id="name">{name}</span></p><p>金额: ¥<span id="money">{money}</span></p>
<p>订单号: <span id="out_trade_no">{out_trade_no}</span></p>
<form method="post" action="/cashier/{trade_no}/pay">\
<button id="pay" type="submit">Pay ¥{money}</button></form></body></html>"""

PAID_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Paid</title>
</head><body><h1>Paid</h1><p>notify response:</p><pre id="notify">{notify}</pre>
</body></html>"""


class _Handler(BaseHTTPRequestHandler):
    server_version = "EpaySimulator/1.0"

    @property
    def sim(self) -> EpaySimulator:
        return self.server.simulator  # type: ignore[attr-defined]

    def log_message(self, fmt: str, *args: Any) -> None:
        logger.debug("%s - " + fmt, self.address_string(), *args)

    def _params(self) -> dict[str, str]:
        query = urlsplit(self.path).query
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8")
            query = f"{query}&{body}" if query else body
        # PHP keeps the last value of a repeated key; mirror that.
        return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}

    def _cashier_url(self, trade_no: str) -> str:
        # Honour the Host the client used so payurls survive port mappings.
        host = self.headers.get("Host")
        return f"{f'http://{host}' if host else self.sim.base_url}/cashier/{trade_no}"

    def _send(self, status: int, body: str, ctype: str, location: str = "") -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, payload: dict[str, Any]) -> None:
        # Real panels report errors as code=-1 with HTTP 200.
        self._send(200, json.dumps(payload, ensure_ascii=False), "application/json")

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        path = urlsplit(self.path).path
        parts = [p for p in path.split("/") if p]
        is_post = self.command == "POST"
        faults = self.sim.faults
        if path in ("/mapi.php", "/api.php"):
            faults.before_answer()
            if faults.take("fail_5xx"):
                return self._send(500, "<h1>502 Bad Gateway</h1>", "text/html")
        try:
            if path == "/mapi.php" and is_post:
                trade_no = self.sim.create_trade(self._params())["trade_no"]
                url = self._cashier_url(trade_no)
                ok = {"code": 1, "msg": "success", "trade_no": trade_no}
                self._hang_if_told()
                self._json({**ok, "payurl": url, "qrcode": url})
            elif path == "/submit.php":
                trade_no = self.sim.create_trade(self._params())["trade_no"]
                self._send(302, "", "text/plain", self._cashier_url(trade_no))
            elif path == "/api.php":
                params = self._params()
                act = params.get("act")
                answers = {
                    "refund": self.sim.refund,
                    "refundquery": self.sim.refund_query,
                    "orders": self.sim.orders,
                    "query": self.sim.merchant_query,
                }
                result = answers.get(act or "", self.sim.query)(params)
                self._hang_if_told()
                if act == "orders" and self.sim.statement_corrupt:
                    body = json.dumps(result, ensure_ascii=False)
                    return self._send(200, body[: len(body) // 2], "application/json")
                self._json(result)
            elif len(parts) == 2 and parts[0] == "cashier" and not is_post:
                self._cashier(parts[1])
            elif len(parts) == 3 and parts[::2] == ["cashier", "pay"] and is_post:
                self._pay(parts[1])
            else:
                self._send(404, "Not Found", "text/plain")
        except EpayError as exc:
            if path == "/submit.php":  # a browser is looking: show a page, not JSON
                self._send(400, f"<h1>{html.escape(str(exc))}</h1>", "text/html")
            else:
                self._json({"code": exc.code, "msg": str(exc)})

    def _hang_if_told(self) -> None:
        # The panel acted; the answer comes too late for the caller to see it.
        if self.sim.faults.take("timeout"):
            time.sleep(self.sim.faults.hang_seconds)

    def _cashier(self, trade_no: str) -> None:
        trade = self.sim.trade(trade_no=trade_no)
        if trade is None:
            return self._send(404, "订单不存在", "text/plain")
        fields = ("name", "money", "out_trade_no", "trade_no")
        page = CASHIER_HTML.format(**{f: html.escape(str(trade[f])) for f in fields})
        self._send(200, page, "text/html")

    def _pay(self, trade_no: str) -> None:
        trade = self.sim.trade(trade_no=trade_no)
        if trade is None:
            return self._send(404, "订单不存在", "text/plain")
        try:
            notify_text = self.sim.pay_trade(trade_no).text
        except requests.RequestException as exc:
            # A dead notify endpoint does not undo the payment, as on a real panel.
            notify_text = f"notify failed: {exc!r}"
        if return_url := trade["return_url"]:
            sep = "&" if urlsplit(return_url).query else "?"
            query = urlencode(self.sim.notify_params(trade_no))
            return self._send(302, "", "text/plain", f"{return_url}{sep}{query}")
        self._send(200, PAID_HTML.format(notify=html.escape(notify_text)), "text/html")


def _account_file_sync(sim: EpaySimulator, path: Path) -> None:
    """Keep the demo merchant across restarts: reuse the pid/key in `path`, rewrite it with this run's URL."""
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        sim.add_merchant(data["merchant_no"], data["credentials"]["key"])
        sim._account = SimAccount(data["merchant_no"], sim.base_url, data.get("currency", "CNY"), data["credentials"])
    account = sim.account()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "merchant_no": account.merchant_no,
                "base_url": sim.base_url,
                "currency": account.currency,
                "credentials": account.credentials,
            }
        ),
        encoding="utf-8",
    )
    path.chmod(0o600)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--merchant", action="append", default=[], metavar="PID:KEY")
    parser.add_argument("--merchants-file", help='JSON {"pid": "key"}, re-read on miss')
    parser.add_argument("--notify-method", choices=["GET", "POST"], type=str.upper)
    parser.add_argument("--account-file", help="SimAccount JSON: its merchant is loaded if present, else created")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    sim = EpaySimulator(
        dict(m.split(":", 1) for m in args.merchant),
        args.host,
        args.port,
        args.notify_method or "GET",
        merchants_file=args.merchants_file,
    ).start()
    if args.account_file:
        _account_file_sync(sim, Path(args.account_file))
    print(sim.base_url, flush=True)
    try:
        threading.Event().wait()  # serve until killed
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
