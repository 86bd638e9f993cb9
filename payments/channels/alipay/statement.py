"""Alipay's daily trade bill (业务账单, bill_type=trade): the file behind bill_download_url, downloaded to a temporary
file and parsed as it streams into StatementLines.

What the format is, as relied on here: Alipay's "查询对账单下载地址" reference (opendocs.alipay.com/apis/api_15/
alipay.data.dataservice.bill.downloadurl.query: bill_type trade|signcustomer, bill_date yyyy-MM-dd, a URL valid 30 s,
a csv.zip) and its integration notes (developer.aliyun.com/article/707638: the CSV is ANSI, i.e. GBK); the real
exports quoted in public projects that parse them (e.g. a qdingnet payment module's test bill, several Java
reconcilers): a ZIP holding `<pid>0156_<yyyymmdd>_业务明细.csv` and `..._业务明细(汇总).csv`, GBK, member names
in GBK without the UTF-8 flag. The detail file is
    #支付宝业务明细查询 / #账号：[...] / #起始日期：[...]   终止日期：[...] / #----业务明细列表----
    支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,
    商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,
    商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注
    rows; ids padded with a trailing tab (so spreadsheets keep them as text); 业务类型 交易 or 退款; a refund row
    carries the trade's ids, negative amounts and our out_request_no
    #----业务明细列表结束---- / #交易合计：N笔，商家实收共X元，商家优惠共Y元 / #退款合计：N笔，商家实收退款共-X元，... /
    #导出时间：[...]
and the summary file's 合计 row (门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,...,
服务费（元）,分润（元）,实收净额（元）) is the only place the day's fee total appears.

The sign of 服务费 differs between the exports quoted publicly, so each line's fee is taken by magnitude; the fee
total is the summary's, by magnitude too (payment fees net of the fees refunds gave back).

Alipay publishes no hash or signature of the file: integrity rests on the ZIP's CRC-32s (checked before a line is
given out) and on the file's own totals, which the lines must add up to (checked at the end). Either failing is
Unknown. Must not import Django.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from datetime import date, datetime
from typing import IO

import requests

from core.money import Money
from payments.channels.alipay import wire
from payments.channels.base import Retryable, Statement, StatementKind, StatementLine, StatementTotals, Unknown

CHUNK = 64 * 1024
# Alipay writes GBK; GB18030 decodes every GBK byte sequence the same and also the few characters GBK lacks.
ENCODING = "gb18030"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

COL_TRADE_NO = "支付宝交易号"
COL_OUT_TRADE_NO = "商户订单号"
COL_KIND = "业务类型"
COL_FINISHED = "完成时间"
COL_RECEIVED = "商家实收（元）"  # what reached the merchant: the column the file's totals sum
COL_REFUND_NO = "退款批次号/请求号"
COL_FEE = "服务费（元）"
DETAIL_REQUIRED = (COL_TRADE_NO, COL_OUT_TRADE_NO, COL_KIND, COL_FINISHED, COL_RECEIVED, COL_REFUND_NO, COL_FEE)
SUMMARY_FEE, SUMMARY_TOTAL_ROW = "服务费（元）", "合计"

KIND_BY_WORD = {"交易": StatementKind.PAYMENT, "退款": StatementKind.REFUND}
END_MARK = "业务明细列表结束"
_TRADE_TOTAL_RE = re.compile(r"#交易合计[：:](\d+)笔[，,]商家实收共(-?[0-9.]+)元")
_REFUND_TOTAL_RE = re.compile(r"#退款合计[：:](\d+)笔[，,]商家实收退款共(-?[0-9.]+)元")
_AMOUNT_RE = re.compile(r"(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?")


def download(url: str, timeouts: tuple[float, float]) -> tuple[IO[bytes], str]:
    """The file at `url` in a temporary file (rewound), and the sha256 of its bytes as received.

    A GET changes nothing at Alipay: every failure to fetch is Retryable (the caller asks for a fresh URL).
    """
    out = tempfile.TemporaryFile()
    digest = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=timeouts, allow_redirects=False) as resp:
            if resp.status_code != 200:
                raise Retryable(f"alipay bill download answered HTTP {resp.status_code}", code="download_http")
            ctype = resp.headers.get("Content-Type", "")
            if ctype.startswith("text/"):
                # Alipay answers an expired or used link with a page ("下载超时，请重新下载"), not the file.
                raise Retryable("alipay bill link expired or refused", code="download_expired")
            for chunk in resp.iter_content(CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except requests.RequestException as exc:
        out.close()
        raise Retryable(f"alipay bill download failed: {type(exc).__name__}", code="download_failed") from exc
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out, digest.hexdigest()


def open_statement(raw: IO[bytes], source_hash: str, day: date, currency: str) -> Statement:
    """Check the archive, then hand out its lines lazily; `totals` is set once the last line was read."""
    try:
        archive = zipfile.ZipFile(raw, metadata_encoding="gbk")
        bad = archive.testzip()  # reads every member through its CRC-32, a chunk at a time
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raw.close()
        raise Unknown(f"alipay bill is not a sound ZIP: {type(exc).__name__}", code="corrupt_file") from exc
    if bad is not None:
        archive.close()
        raw.close()
        raise Unknown("alipay bill fails its CRC check", code="corrupt_file")
    detail = next((n for n in archive.namelist() if n.endswith(".csv") and "汇总" not in n and "明细" in n), None)
    summary = next((n for n in archive.namelist() if n.endswith(".csv") and "汇总" in n), None)
    if detail is None or summary is None:
        archive.close()
        raw.close()
        raise Unknown("alipay bill lacks its detail or summary file", code="corrupt_file")
    statement = Statement(day=day, lines=iter(()), source_hash=source_hash)
    statement.lines = _lines(statement, archive, raw, detail, summary, currency)
    return statement


def _lines(
    statement: Statement, archive: zipfile.ZipFile, raw: IO[bytes], detail: str, summary: str, currency: str
) -> Iterator[StatementLine]:
    counts = {StatementKind.PAYMENT: 0, StatementKind.REFUND: 0}
    sums = {StatementKind.PAYMENT: 0, StatementKind.REFUND: 0}
    fee_net = 0  # the 服务费 column summed as written: fees kept on payments net of those refunds gave back
    stated: dict[StatementKind, tuple[int, int]] = {}
    try:
        with archive, raw, archive.open(detail) as member:
            reader = csv.reader(io.TextIOWrapper(member, encoding=ENCODING, newline=""))
            columns: dict[str, int] | None = None
            ended = False
            for row in reader:
                if not row or not "".join(row).strip():
                    continue
                if row[0].startswith("#"):
                    comment = ",".join(row).strip()
                    if END_MARK in comment:
                        ended = True
                    elif ended:
                        _read_total(comment, stated)
                    continue
                if ended:
                    raise Unknown(f"alipay bill has rows after its end (line {reader.line_num})", code="corrupt_file")
                if columns is None:
                    columns = _columns(row)
                    continue
                line, signed_fee = _line(row, columns, reader.line_num, currency)
                if line.kind in counts:
                    counts[line.kind] += 1
                    sums[line.kind] += line.amount.amount_minor
                fee_net += signed_fee  # the summary sums the column over every row
                yield line
            if not ended or len(stated) != 2:
                raise Unknown("alipay bill ends before its totals (truncated?)", code="corrupt_file")
            with archive.open(summary) as member:
                fee_total = _summary_fee(io.TextIOWrapper(member, encoding=ENCODING, newline=""), currency)
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise Unknown(f"alipay bill unreadable: {type(exc).__name__}", code="corrupt_file") from exc
    for kind, (count, minor) in stated.items():
        if (counts[kind], sums[kind]) != (count, minor):
            raise Unknown(f"alipay bill {kind} lines do not add up to its own totals", code="totals_mismatch")
    if abs(fee_net) != fee_total:
        raise Unknown("alipay bill line fees do not add up to its summary", code="totals_mismatch")
    statement.totals = StatementTotals(
        count=counts[StatementKind.PAYMENT] + counts[StatementKind.REFUND],
        amount=Money(sums[StatementKind.PAYMENT] - sums[StatementKind.REFUND], currency),
        fee=Money(fee_total, currency),
    )


def _columns(header: list[str]) -> dict[str, int]:
    columns = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in DETAIL_REQUIRED if c not in columns]
    if missing:
        raise Unknown(f"alipay bill header lacks {', '.join(missing)}", code="bad_format")
    return columns


def _line(row: list[str], columns: dict[str, int], line_no: int, currency: str) -> tuple[StatementLine, int]:
    """One detail row, and its fee as signed in the file (the summary's fee total is their sum)."""
    if len(row) < len(columns):
        raise Unknown(f"alipay bill line {line_no} is short", code="bad_format")

    def cell(name: str) -> str:
        return row[columns[name]].strip()  # ids end in a tab

    word = cell(COL_KIND)
    kind = KIND_BY_WORD.get(word, StatementKind.OTHER)
    received = _minor(cell(COL_RECEIVED), line_no)
    signed_fee = _minor(cell(COL_FEE), line_no)
    trade_no, out_trade_no = cell(COL_TRADE_NO), cell(COL_OUT_TRADE_NO)
    try:
        occurred = datetime.strptime(cell(COL_FINISHED), TIME_FORMAT).replace(tzinfo=wire.TIME_ZONE)
    except ValueError:
        raise Unknown(f"alipay bill line {line_no} has no valid 完成时间", code="bad_format") from None
    # A row about a refund (退款, or a word this parser does not know) names it by our out_request_no; Alipay has no
    # id of its own for a refund, only the trade's. A refund sent without out_request_no took our out_trade_no.
    refund_no = cell(COL_REFUND_NO) or (out_trade_no if kind == StatementKind.REFUND else "")
    line = StatementLine(
        kind=kind,
        provider_ref=trade_no,
        our_ref=refund_no or out_trade_no,
        amount=Money(abs(received), currency),
        fee=Money(abs(signed_fee), currency),
        status=word,
        occurred_at=occurred,
        trade_ref=trade_no if refund_no else "",
        line_no=line_no,
    )
    return line, signed_fee


def _read_total(comment: str, stated: dict[StatementKind, tuple[int, int]]) -> None:
    for kind, pattern in ((StatementKind.PAYMENT, _TRADE_TOTAL_RE), (StatementKind.REFUND, _REFUND_TOTAL_RE)):
        if m := pattern.match(comment):
            stated[kind] = (int(m.group(1)), abs(_minor(m.group(2), 0)))


def _summary_fee(text: io.TextIOWrapper, currency: str) -> int:
    columns: dict[str, int] | None = None
    for row in csv.reader(text):
        if not row or row[0].startswith("#"):
            continue
        if columns is None:
            columns = {name.strip(): i for i, name in enumerate(row)}
            if SUMMARY_FEE not in columns:
                raise Unknown("alipay bill summary lacks 服务费", code="bad_format")
            continue
        if row[0].strip() == SUMMARY_TOTAL_ROW and len(row) > columns[SUMMARY_FEE]:
            return abs(_minor(row[columns[SUMMARY_FEE]].strip(), 0))
    raise Unknown("alipay bill summary has no 合计 row", code="bad_format")


def _minor(text: str, line_no: int) -> int:
    """An exact yuan amount as written ("-0.01", "29.27000") in fen; more precision than fen is refused."""
    m = _AMOUNT_RE.fullmatch(text)
    frac = (m.group(3) or "").rstrip("0") if m else ""
    if not m or len(frac) > 2:
        raise Unknown(f"alipay bill amount {text[:20]!r} on line {line_no} is not exact", code="bad_format")
    minor = int(m.group(2)) * 100 + int(frac.ljust(2, "0"))
    return -minor if m.group(1) else minor
