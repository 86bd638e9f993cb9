"""WeChat Pay's daily trade bill (交易账单, bill_type ALL) checked and parsed from a downloaded file, as it streams.

What this relies on (WeChat Pay merchant docs "申请交易账单" pay.weixin.qq.com/doc/v3/merchant/4012556654 and its
FAQ 4013071254; the wechatpayv3 2.0.4 SDK `trade_bill` / `download_bill`): the answer of GET /v3/bill/tradebill
is {hash_type: SHA1, hash_value, download_url}; hash_value is the SHA1 of the ORIGINAL file ("gzip需要解压缩");
the file itself comes unsigned, UTF-8, GZIP when tar_type=GZIP. Its parts: the detail header (wire.BILL_COLUMNS),
the detail rows (every field prefixed with a back-tick), the summary header (wire.BILL_SUMMARY_COLUMNS) and one
row of totals. Amounts are yuan; refund rows state their fee as a negative amount (the fee given back).

Nothing here does network I/O: the adapter downloads, this module reads the temporary file.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator
from typing import IO

from core.crypto import constant_time_equals
from core.money import Money, MoneyError
from payments.channels.base import Statement, StatementKind, StatementLine, StatementTotals, Unknown
from payments.channels.wechatpay import wire

_CHUNK = 64 * 1024
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error)


def _plain(raw: IO[bytes], gzipped: bool) -> IO[bytes]:
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw


def check_hash(raw: IO[bytes], *, gzipped: bool, hash_value: str) -> None:
    """SHA1 of the uncompressed file against the signed hash_value, in chunks (never the whole file in memory)."""
    digest = hashlib.sha1()  # noqa: S324 (the protocol's integrity hash, not a signature)
    try:
        stream = _plain(raw, gzipped)
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    except _DECOMPRESS_ERRORS as exc:
        raise Unknown("wechatpay bill does not decompress", code="corrupt_statement") from exc
    if not constant_time_equals(digest.hexdigest(), hash_value.strip().lower()):
        raise Unknown("wechatpay bill does not match its SHA1 hash_value", code="bad_hash")


def lines(raw: IO[bytes], *, gzipped: bool, statement: Statement) -> Iterator[StatementLine]:
    """The bill's rows as normalised lines, one at a time; fills statement.totals from the summary. Closes `raw`
    when done (or when the iterator is closed). A row it cannot read raises Unknown naming its line."""
    try:
        text = io.TextIOWrapper(_plain(raw, gzipped), encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        try:
            yield from _rows(reader, statement)
        except (csv.Error, UnicodeDecodeError, *_DECOMPRESS_ERRORS) as exc:
            raise Unknown(f"wechatpay bill unreadable near line {reader.line_num}", code="corrupt_statement") from exc
    finally:
        raw.close()


def _rows(reader: Iterator[list[str]], statement: Statement) -> Iterator[StatementLine]:
    header = next(reader, None)
    if header is None:
        raise Unknown("wechatpay bill is empty", code="corrupt_statement")
    index = {wire.bill_field(name).strip(): i for i, name in enumerate(header)}
    missing = [c for c in wire.BILL_COLUMNS if c not in index]
    if missing:
        raise Unknown(f"wechatpay bill lacks columns {', '.join(missing[:3])}", code="corrupt_statement")
    line_no = 1
    for row in reader:
        line_no += 1
        if not any(cell.strip() for cell in row):
            continue
        if wire.bill_field(row[0]).strip() == wire.BILL_SUMMARY_COLUMNS[0]:
            statement.totals = _totals(row, next(reader, None), line_no + 1)
            return
        yield _line(row, index, line_no)
    raise Unknown("wechatpay bill has no summary (truncated?)", code="corrupt_statement")


def _line(row: list[str], index: dict[str, int], line_no: int) -> StatementLine:
    if len(row) < len(index):
        raise Unknown(f"wechatpay bill line {line_no} has {len(row)} fields", code="corrupt_statement")

    def field(name: str) -> str:
        return wire.bill_field(row[index[name]]).strip()

    currency = field("货币种类") or wire.SUPPORTED_CURRENCY
    occurred_at = wire.bill_time(field("交易时间"))
    if occurred_at is None:
        raise Unknown(f"wechatpay bill line {line_no}: 交易时间 not understood", code="corrupt_statement")

    def money(name: str) -> Money:
        fen = wire.bill_fen(field(name))
        if fen is None:
            raise Unknown(f"wechatpay bill line {line_no}: {name} not an amount", code="corrupt_statement")
        try:
            return Money(abs(fen), currency)  # normalised positive: the kind says the direction
        except MoneyError as exc:
            raise Unknown(f"wechatpay bill line {line_no}: currency not understood", code="corrupt_statement") from exc

    state = field("交易状态")
    if state == wire.BILL_REFUND_STATE:
        return StatementLine(
            kind=StatementKind.REFUND,
            provider_ref=field("微信退款单号"),
            our_ref=field("商户退款单号"),
            amount=money("退款金额"),  # what reached the buyer (申请退款金额 less 免充值券)
            fee=money("手续费"),  # negative in the file: the fee WeChat gave back
            status=field("退款状态"),
            occurred_at=occurred_at,
            trade_ref=field("微信订单号"),
            line_no=line_no,
        )
    # 应结订单金额 (order amount less 免充值券) is what the summary adds up and what settles to the merchant.
    return StatementLine(
        kind=StatementKind.PAYMENT if state == wire.BILL_PAYMENT_STATE else StatementKind.OTHER,
        provider_ref=field("微信订单号"),
        our_ref=field("商户订单号"),
        amount=money("应结订单金额"),
        fee=money("手续费"),
        status=state,
        occurred_at=occurred_at,
        line_no=line_no,
    )


def _totals(header: list[str], row: list[str] | None, line_no: int) -> StatementTotals:
    names = [wire.bill_field(h).strip() for h in header]
    if row is None or len(row) < len(names):
        raise Unknown("wechatpay bill summary has no totals row", code="corrupt_statement")
    values = dict(zip(names, (wire.bill_field(v).strip() for v in row), strict=False))
    needed = ("总交易单数", "应结订单总金额", "退款总金额", "手续费总金额")
    if any(n not in values for n in needed) or not values["总交易单数"].isascii():
        raise Unknown(f"wechatpay bill summary at line {line_no} not understood", code="corrupt_statement")
    count = values["总交易单数"]
    paid, refunded, fee = (wire.bill_fen(values[n]) for n in needed[1:])
    if not count.isdigit() or paid is None or refunded is None or fee is None:
        raise Unknown(f"wechatpay bill summary at line {line_no} not understood", code="corrupt_statement")
    # The shop's control totals: net amount (payments less refunds) and net fee (payment fees less the fees
    # given back), as WeChat sums them; the lines carry both as positive amounts with their kind.
    return StatementTotals(
        count=int(count),
        amount=Money(paid - refunded, wire.SUPPORTED_CURRENCY),
        fee=Money(fee, wire.SUPPORTED_CURRENCY),
    )
