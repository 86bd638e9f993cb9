"""epay's statement: the panel has none, so a day is read off its order list, `api.php?act=orders`.

What this relies on, from the 彩虹易支付 `api.php` source and the panels' published API pages (kancloud
"[API]批量查询订单"): GET `act=orders&pid=&key=&limit=&offset=` (forks: `page`), `limit` capped at 50, rows
`ORDER BY trade_no DESC LIMIT offset,limit`; answer `{code: 1, msg, count, data: [{trade_no, out_trade_no, type,
pid, addtime, endtime, name, money, param, buyer, status}]}` with `data` null on an empty page; refusals are
`{code: -3, msg: 商户ID不存在 / 商户密钥错误}`, an unknown act `{code: -5, msg: "No Act!"}`. The answer is not
signed (the key rides in the query, as for act=order). Forks answering the whole `pre_order` row add
`getmoney` (what the merchant keeps: money minus the panel's fee) and `refundmoney`; `status` is 0 unpaid,
1 paid, 2 refunded, 3 frozen. trade_no starts with the panel's `date("YmdHis")`, so list order is time order.

The day is Asia/Shanghai (the panel writes its local time, PHP `date.timezone`), and an order belongs to the day
of its `endtime` (completion). The list has no date filter: pages are walked from the newest until orders
created before the day minus `statement_lookback_days` (credential, default 1: a trade paid after midnight was
created at most that long before). Limits of the source, said here once: no control totals (totals stay None),
no refund time nor refund number (a refund is dated at its trade's endtime, as the list shows it when read,
with trade_ref = provider_ref = the trade's trade_no and our_ref ""), and the fee only where the row has
`getmoney` (else Money(0): the account's fee rate is not on the list).

Offset paging over a list that moves while it is read: new orders push rows down (they come again on the next
page), deleted ones (panels purge unpaid orders) pull rows up (one could be skipped). Each page overlaps the
last by one row; rows at or above the lowest trade_no already read are repeats and dropped (counting equal
ones, so a row the panel really lists twice still shows twice), and a page that no longer reaches back to it
means rows moved up: the walk steps back a page. Memory stays one page whatever the day's size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import requests

from core.money import Money, MoneyError
from payments.channels.base import AccountConfig, Retryable, Statement, StatementKind, StatementLine, Terminal, Unknown
from payments.channels.epay import wire

if TYPE_CHECKING:
    from payments.channels.epay.adapter import EpayAdapter

SHANGHAI = ZoneInfo("Asia/Shanghai")
_MAX_STEP_BACKS = 20


def statement(adapter: EpayAdapter, day: date, session: requests.Session, *, url: str, key: str) -> Statement:
    """`url` is the panel's api.php, `key` the merchant key (it rides in the query, as the protocol has it)."""
    start = datetime.combine(day, time(), SHANGHAI)
    end = start + timedelta(days=1)
    if datetime.now(SHANGHAI) < end:
        # Orders can still complete on this day: the list is not the day's yet.
        raise Retryable(f"epay day {day} is not over in Asia/Shanghai", code="not_ready")
    creds = adapter.account.credentials
    try:
        lookback = timedelta(days=int(creds.get("statement_lookback_days", "1")))
        # Offset pages overlap by one row, so a page holds at least two.
        size = min(int(creds.get("orders_page_size", str(wire.ORDERS_PAGE_MAX))), wire.ORDERS_PAGE_MAX)
    except ValueError as exc:
        raise Terminal("epay statement settings are not numbers", code="bad_config") from exc
    walk = _OrderWalk(
        session, adapter.account, url, key, size=max(size, 2), by_page=creds.get("orders_paging") == "page"
    )
    first = walk.fetch()  # eagerly: a refused key or a dead panel raises from statement(), not mid-iteration
    result = Statement(day=day, lines=iter(()))
    result.lines = _lines(adapter, walk, first, start, end, start - lookback, result)
    return result


def _lines(
    adapter: EpayAdapter,
    walk: _OrderWalk,
    first: list[dict],
    start: datetime,
    end: datetime,
    cutoff: datetime,
    result: Statement,
) -> Iterator[StatementLine]:
    line_no = 0
    for row in walk.rows(first):
        line_no += 1
        if str(row["pid"]) != adapter.account.merchant_no:
            raise Unknown(f"epay order list row {line_no} is another merchant's", code="bad_statement")
        if _at(row["addtime"], line_no) < cutoff:
            break  # older than any order that could complete on the day; the rest is older still
        status = str(row["status"])
        if status == wire.LIST_UNPAID or row.get("endtime") in (None, ""):
            continue
        done = _at(row["endtime"], line_no)
        if not start <= done < end:
            continue
        yield from _row_lines(row, status, done, line_no)
    # The answers' bytes are all read only now: the hash covers every page as downloaded.
    result.source_hash = walk.hasher.hexdigest()


def _row_lines(row: dict, status: str, done: datetime, line_no: int) -> Iterator[StatementLine]:
    trade_no, out_trade_no = str(row["trade_no"]), str(row["out_trade_no"])
    amount = _money(row["money"], line_no)
    if status not in wire.LIST_PAID:
        # A status this panel's version added: shown to operators, never taken for a payment.
        zero = Money(0, amount.currency)
        yield StatementLine(StatementKind.OTHER, trade_no, out_trade_no, amount, zero, status, done, line_no=line_no)
        return
    fee = Money(0, amount.currency)
    if row.get("getmoney") not in (None, ""):
        fee = amount - _money(row["getmoney"], line_no)
        if fee.amount_minor < 0:
            raise Unknown(f"epay order list row {line_no} keeps more than was paid", code="bad_statement")
    yield StatementLine(StatementKind.PAYMENT, trade_no, out_trade_no, amount, fee, status, done, line_no=line_no)
    refunded = Money(0, amount.currency)
    if row.get("refundmoney") not in (None, ""):
        refunded = _money(row["refundmoney"], line_no)
    elif status == wire.LIST_REFUNDED:
        refunded = amount  # the basic row has no refundmoney: status 2 is a whole refund
    if refunded.amount_minor:
        zero = Money(0, amount.currency)
        yield StatementLine(
            StatementKind.REFUND, trade_no, "", refunded, zero, status, done, trade_ref=trade_no, line_no=line_no
        )


def _money(value: object, line_no: int) -> Money:
    try:
        return Money.from_decimal_str(value if isinstance(value, str) else "", wire.SUPPORTED_CURRENCY)
    except MoneyError as exc:
        raise Unknown(f"epay order list row {line_no}: amount not understood", code="bad_statement") from exc


def _at(value: object, line_no: int) -> datetime:
    # The exact shape first (fromisoformat alone takes dates, offsets...); strptime is ten times slower.
    if not isinstance(value, str) or not wire.ORDERS_TIME_RE.fullmatch(value):
        raise Unknown(f"epay order list row {line_no}: time not understood", code="bad_statement")
    try:
        return datetime.fromisoformat(value).replace(tzinfo=SHANGHAI)
    except ValueError as exc:
        raise Unknown(f"epay order list row {line_no}: time not understood", code="bad_statement") from exc


def _key(row: dict) -> tuple[int, str]:
    # trade_no is a fixed-width digit string on one panel; length first keeps a fork's longer ones in order.
    trade_no = str(row["trade_no"])
    return len(trade_no), trade_no


class _OrderWalk:
    """The order list page by page, each row once, the pages' raw bytes hashed as they arrive."""

    def __init__(
        self, session: requests.Session, account: AccountConfig, url: str, key: str, *, size: int, by_page: bool
    ) -> None:
        self.session, self.account, self.url, self.key = session, account, url, key
        self.size, self.by_page = size, by_page
        self.hasher = hashlib.sha256()
        self.offset = 0  # of the page last fetched (offset paging)
        self.page = 1  # of the page last fetched (page paging)

    def fetch(self) -> list[dict]:
        account = self.account
        params = {"act": "orders", "pid": account.merchant_no, "key": self.key, "limit": str(self.size)}
        params.update({"page": str(self.page)} if self.by_page else {"offset": str(self.offset)})
        try:
            resp = self.session.get(self.url, params=params, timeout=account.timeouts)
        except (requests.ConnectionError, requests.Timeout) as exc:
            # A read changes nothing at the panel: a timeout is as safe to repeat as a refused connection.
            raise Retryable(f"epay order list unreachable: {type(exc).__name__}", code="connect") from exc
        if resp.status_code >= 500:
            raise Retryable(f"epay order list answered {resp.status_code}", code="http_5xx")
        if resp.status_code >= 400:
            # The panel answers its own refusals as code -3 / -5 with HTTP 200: a 4xx is the site refusing.
            raise Terminal(f"epay order list answered {resp.status_code}", code="refused")
        self.hasher.update(resp.content)
        try:
            data = json.loads(resp.content)
        except ValueError as exc:
            raise Unknown("epay order list answered malformed JSON", code="bad_statement") from exc
        if not isinstance(data, dict):
            raise Unknown("epay order list answered an unexpected shape", code="bad_statement")
        if str(data.get("code")) != "1":
            raise Terminal(f"epay refused the order list: {data.get('msg', '')}"[:200], code="refused")
        rows = data.get("data") or []  # PHP writes null for an empty page
        if not isinstance(rows, list) or not all(_well_formed(r) for r in rows):
            raise Unknown("epay order list rows are malformed", code="bad_statement")
        return rows

    def rows(self, first: list[dict]) -> Iterator[dict]:
        page, floor, floor_seen, step_backs = first, None, 0, 0
        while page:
            if floor is not None and not self.by_page and self.offset and max(map(_key, page)) < floor:
                # The page starts below what was read: rows moved up (deleted above). Read further back.
                step_backs += 1
                if step_backs > _MAX_STEP_BACKS:
                    raise Retryable("epay order list kept moving while read", code="list_moving")
                self.offset = max(self.offset - self.size + 1, 0)
                page = self.fetch()
                continue
            equal_skipped, fresh = 0, []
            for row in page:
                key = _key(row)
                if floor is not None and (key > floor or (key == floor and equal_skipped < floor_seen)):
                    equal_skipped += key == floor
                    continue  # read on an earlier page
                fresh.append(row)
            lowest = min(map(_key, page))
            if floor is None or lowest < floor:
                floor, floor_seen = lowest, sum(1 for r in fresh if _key(r) == lowest)
            elif lowest == floor:
                floor_seen += sum(1 for r in fresh if _key(r) == floor)
            yield from fresh
            if len(page) < self.size:
                return  # the end of the list
            if self.by_page:
                self.page += 1
            else:
                self.offset += len(page) - 1  # overlap one row, to see whether the list moved
            page = self.fetch()


def _well_formed(row: object) -> bool:
    return isinstance(row, dict) and all(row.get(f) not in (None, "") for f in wire.ORDERS_REQUIRED)
