"""Reconciliation of one channel account's day: its statement, streamed, against what we recorded.

Ours (`payments.facade.statement_expected`: payments that took money and final refunds, that day in the shop's
time zone; settlement's own paid payouts of the account; the fee the ledger booked for each sale) is read once
into dicts keyed by the provider's number and by ours, which for 100,000 trades is tens of MB. The statement is
never held: each line is matched as it is parsed, by the provider's number first and then by ours, and compared:
amount, currency, fee. Then whatever of ours the statement did not list is missing at the channel, or `timing`
when it happened within `CUTOFF` of the day's edge (it may be on the next day's file). Exceptions are typed
(`ReconKind`) and unique per run, so running a day again files nothing twice; a finished day is not run again.

Automatic actions: a fee difference is posted as an adjustment and the rate the day implies handed to routing
(`_fees_adjust`); a trade missing in the ledger is queried and applied by cardshop.services.reconciliation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.audit import audit_record
from payments import facade as payments
from payments.channels.base import Statement, StatementKind, StatementLine
from payments.contracts import ExpectedLine
from settlement.contracts import AdjustmentLine, ReconRunView, SettlementError
from settlement.models import (
    AccountKind,
    Payout,
    PayoutState,
    ReconException,
    ReconExceptionStatus,
    ReconKind,
    ReconRun,
    ReconState,
    SaleRelease,
)
from settlement.services.adjustments import adjustment_post

log = logging.getLogger(__name__)

CUTOFF = timedelta(minutes=15)  # one-sided within this of the day's edge: timing, not missing
PROGRESS_EVERY = 1000  # lines between two progress saves (the admin's progress bar)


@dataclass
class _Ours:
    line: ExpectedLine
    fee_minor: int | None  # what the ledger booked (payments); None when unknown
    matched: bool = False


def _window(day: date) -> tuple[datetime, datetime]:
    zone = ZoneInfo(settings.TIME_ZONE)
    start = datetime.combine(day, time.min, tzinfo=zone)
    return start, start + timedelta(days=1)


def _booked_fees(channel_account_id: int, since: datetime, until: datetime) -> dict[str, int]:
    """{out_trade_no: channel fee the ledger booked} for the sales of the account sold in the window."""
    rows = SaleRelease.objects.filter(
        channel_account_id=channel_account_id, sold_at__gte=since - CUTOFF, sold_at__lt=until + CUTOFF
    ).values_list("sale__idempotency_key", "channel_fee_minor")
    return {key.split(":", 1)[1]: fee for key, fee in rows.iterator(chunk_size=2000)}


class _Matcher:
    def __init__(self, run: ReconRun, expected: list[_Ours], payouts: dict[str, int], edges: tuple[datetime, datetime]):
        self.run = run
        self.by_provider: dict[tuple[str, str], _Ours] = {}
        self.by_ours: dict[tuple[str, str], _Ours] = {}
        self.refunds_by_trade: dict[str, list[_Ours]] = {}  # out_trade_no -> its final refunds
        for ours in expected:
            if ours.line.provider_ref:
                self.by_provider[(ours.line.kind, ours.line.provider_ref)] = ours
            self.by_ours[(ours.line.kind, ours.line.our_ref)] = ours
            if ours.line.kind == "refund":
                self.refunds_by_trade.setdefault(ours.line.out_trade_no, []).append(ours)
        self.payouts = payouts  # payout_no -> amount (paid through this account)
        self.payouts_seen: set[str] = set()
        self.edges = edges
        self.seen_amount = 0
        self.seen_fee = 0
        self.count = 0
        self.paid_amount = 0  # matched payment lines: their amounts and the fees the statement shows
        self.paid_fee = 0

    def file(self, kind: str, line: StatementLine | None, ours: ExpectedLine | None, **detail) -> None:
        """File one exception, once per run: a rerun of the day finds those already filed (counted at the end)."""
        ReconException.objects.get_or_create(
            run=self.run,
            kind=kind,
            line_kind=line.kind if line else ours.kind if ours else "",
            our_ref=(ours.our_ref if ours else line.our_ref if line else "")[:64],
            provider_ref=((line.provider_ref if line else "") or (ours.provider_ref if ours else ""))[:64],
            defaults={
                "expected_minor": ours.amount.amount_minor if ours else None,
                "actual_minor": line.amount.amount_minor if line else None,
                "currency": line.amount.currency if line else ours.amount.currency if ours else "",
                "detail": {k: v for k, v in detail.items() if v is not None},
            },
        )

    def line(self, line: StatementLine) -> None:
        self.count += 1
        # Control totals as the adapters report them: money in (payments) minus money out (refunds, payouts,
        # anything else booked), and fees charged minus fees given back on refunds.
        self.seen_amount += line.amount.amount_minor * (1 if line.kind == StatementKind.PAYMENT else -1)
        self.seen_fee += line.fee.amount_minor * (-1 if line.kind == StatementKind.REFUND else 1)
        if line.kind == StatementKind.PAYOUT:
            self._payout(line)
            return
        if line.kind not in (StatementKind.PAYMENT, StatementKind.REFUND):
            return  # fees billed apart, adjustments: the balance check, not line matching
        kind = "payment" if line.kind == StatementKind.PAYMENT else "refund"
        ours = self.by_provider.get((kind, line.provider_ref)) if line.provider_ref else None
        if ours is None and line.our_ref:
            ours = self.by_ours.get((kind, line.our_ref))
        if ours is None and kind == "refund" and line.trade_ref and not line.our_ref:
            # A channel that names no refund number (epay): the refunded trade's first unmatched final refund.
            trade = self.by_provider.get(("payment", line.trade_ref))
            waiting = self.refunds_by_trade.get(trade.line.out_trade_no, []) if trade else []
            ours = next((o for o in waiting if not o.matched), None)
        if ours is None:
            known = payments.refund_status(refund_no=line.our_ref) if kind == "refund" and line.our_ref else ""
            if known:  # a refund of ours the provider has paid out, that our records do not show final
                self.file(ReconKind.STATUS, line, None, ours_status=known, status=line.status, line_no=line.line_no)
            else:
                self.file(ReconKind.MISSING_IN_LEDGER, line, None, status=line.status, line_no=line.line_no)
            return
        if ours.matched:
            self.file(ReconKind.DUPLICATE, line, ours.line, line_no=line.line_no)
            return
        ours.matched = True
        self.run.matched += 1
        if line.amount.currency != ours.line.amount.currency:
            self.file(ReconKind.CURRENCY, line, ours.line, statement_currency=line.amount.currency)
        elif line.amount.amount_minor != ours.line.amount.amount_minor:
            self.file(ReconKind.AMOUNT, line, ours.line, line_no=line.line_no)
        if kind == "payment" and line.amount.currency == ours.line.amount.currency:
            self.paid_amount += line.amount.amount_minor
            self.paid_fee += line.fee.amount_minor
        if kind == "payment" and ours.fee_minor is not None and line.fee.amount_minor != ours.fee_minor:
            self.file(
                ReconKind.FEE,
                line,
                ours.line,
                booked_fee_minor=ours.fee_minor,
                statement_fee_minor=line.fee.amount_minor,
            )

    def _payout(self, line: StatementLine) -> None:
        amount = self.payouts.get(line.our_ref)
        if amount is None:
            self.file(ReconKind.MISSING_IN_LEDGER, line, None, status=line.status, line_no=line.line_no)
        elif line.our_ref in self.payouts_seen:
            self.file(ReconKind.DUPLICATE, line, None, line_no=line.line_no)
        else:
            self.payouts_seen.add(line.our_ref)
            self.run.matched += 1
            if line.amount.amount_minor != amount:
                self.file(ReconKind.AMOUNT, line, None, payout_amount_minor=amount)

    def finish(self, statement: Statement) -> None:
        start, end = self.edges
        for ours in self.by_ours.values():
            if ours.matched:
                continue
            near_edge = ours.line.at - start < CUTOFF or end - ours.line.at < CUTOFF
            self.file(ReconKind.TIMING if near_edge else ReconKind.MISSING_AT_CHANNEL, None, ours.line)
        totals = statement.totals
        if totals is not None and (
            totals.count != self.count
            or totals.amount.amount_minor != self.seen_amount
            or totals.fee.amount_minor != self.seen_fee
        ):
            self.file(
                ReconKind.CONTROL_TOTALS,
                None,
                None,
                statement_count=totals.count,
                statement_amount_minor=totals.amount.amount_minor,
                statement_fee_minor=totals.fee.amount_minor,
                lines=self.count,
                lines_amount_minor=self.seen_amount,
                lines_fee_minor=self.seen_fee,
            )


def _fees_adjust(run: ReconRun, matcher: _Matcher) -> None:
    """The statement's fee is what the channel kept: each difference with the ledger's booked fee is posted as an
    adjustment (fee expense against the channel's clearing, keyed by run and trade so a rerun posts nothing twice)
    and the exception resolved; the rate the day's fees imply is handed to routing."""
    fees = run.exceptions.filter(kind=ReconKind.FEE, status=ReconExceptionStatus.OPEN)
    for gap in fees:
        diff = gap.detail["statement_fee_minor"] - gap.detail["booked_fee_minor"]
        account = run.channel_account_id
        adjustment_post(
            currency=gap.currency,
            lines=[
                AdjustmentLine("channel_account", account, AccountKind.CHANNEL_FEE_EXPENSE, diff),
                AdjustmentLine("channel_account", account, AccountKind.CHANNEL_CLEARING, -diff),
            ],
            reason=f"reconciliation {run.day}: the channel kept {gap.detail['statement_fee_minor']}, "
            f"booked {gap.detail['booked_fee_minor']}",
            actor="reconciliation",
            key=f"recon_fee:{run.pk}:{gap.our_ref}",
            reference=gap.our_ref,
        )
        _close(
            gap,
            status=ReconExceptionStatus.RESOLVED,
            resolution="adjusted: fee difference posted",
            actor="reconciliation",
            action="recon.resolve",
        )
    if fees and matcher.paid_amount:
        rate_bp = round(matcher.paid_fee * 10000 / matcher.paid_amount)
        payments.channel_account_fee_learned(
            account_id=run.channel_account_id,
            rate_bp=rate_bp,
            actor="reconciliation",
            evidence=f"statement {run.day}: fees {matcher.paid_fee} on {matcher.paid_amount}",
        )


def reconcile_statement(*, channel_account_id: int, day: date, statement: Statement) -> ReconRun:
    """Compare `statement` (the account's, for `day`) with our records. Idempotent per (account, day)."""
    run, _ = ReconRun.objects.get_or_create(channel_account_id=channel_account_id, day=day)
    if run.state == ReconState.DONE:
        return run
    start, end = _window(day)
    fees = _booked_fees(channel_account_id, start, end)
    expected = [
        _Ours(line=line, fee_minor=fees.get(line.out_trade_no) if line.kind == "payment" else None)
        for line in payments.statement_expected(channel_account_id=channel_account_id, since=start, until=end)
    ]
    paid_out = dict(
        Payout.objects.filter(
            channel_account_id=channel_account_id,
            state=PayoutState.PAID,
            updated_at__gte=start - CUTOFF,
            updated_at__lt=end + CUTOFF,
        ).values_list("payout_no", "amount_minor")
    )
    run.matched = 0
    run.lines_seen = 0
    run.save(update_fields=["matched", "lines_seen"])
    matcher = _Matcher(run, expected, paid_out, (start, end))
    try:
        for line in statement.lines:  # autocommit: each exception lands as it is found, the progress shows
            matcher.line(line)
            run.lines_seen += 1
            if run.lines_seen % PROGRESS_EVERY == 0:
                ReconRun.objects.filter(pk=run.pk).update(lines_seen=run.lines_seen)
        matcher.finish(statement)
    except Exception as exc:  # a statement that breaks mid-stream (tampered, truncated): run the day again
        ReconRun.objects.filter(pk=run.pk).update(
            state=ReconState.FAILED, error=str(exc)[:200], lines_seen=run.lines_seen
        )
        raise
    _fees_adjust(run, matcher)
    run.exception_count = run.exceptions.count()  # what earlier, interrupted runs of the day filed included
    run.state = ReconState.DONE
    run.source_hash = statement.source_hash
    run.finished_at = timezone.now()
    run.save()
    return run


def reconcile_day(*, channel_account_id: int, day: date) -> ReconRun:
    """Download the account's statement for `day` and reconcile it (the beat job's unit of work)."""
    done = ReconRun.objects.filter(channel_account_id=channel_account_id, day=day, state=ReconState.DONE).first()
    if done is not None:
        return done
    statement = payments.statement_fetch(channel_account_id=channel_account_id, day=day)
    return reconcile_statement(channel_account_id=channel_account_id, day=day, statement=statement)


def recon_view(run: ReconRun) -> ReconRunView:
    return ReconRunView(
        run_id=run.pk,
        channel_account_id=run.channel_account_id,
        day=run.day,
        state=run.state,
        lines_seen=run.lines_seen,
        matched=run.matched,
        exception_count=run.exception_count,
    )


def recon_missing_payments(*, run_id: int) -> list[str]:
    """Our numbers of the open `missing_in_ledger` payment lines of a run: trades the provider took money for
    that our records do not show paid (a lost callback), for the caller to query and apply."""
    return list(
        ReconException.objects.filter(
            run_id=run_id, kind=ReconKind.MISSING_IN_LEDGER, line_kind="payment", status=ReconExceptionStatus.OPEN
        )
        .exclude(our_ref="")
        .values_list("our_ref", flat=True)
    )


def _close(found: ReconException, *, status: str, resolution: str, actor: str, action: str) -> None:
    """Close one exception with how it was closed, and its audit row."""
    found.status = status
    found.detail = {**found.detail, "resolution": resolution, "by": actor}
    found.save(update_fields=["status", "detail"])
    audit_record(actor=actor, action=action, target=f"reconexception:{found.pk}", resolution=resolution)


def recon_exception_resolve(*, run_id: int, our_ref: str, kind: str, resolution: str, actor: str) -> bool:
    """Mark an open exception resolved (`resolution` says how), audited. False when none was open."""
    with transaction.atomic():
        found = (
            ReconException.objects.select_for_update()
            .filter(run_id=run_id, our_ref=our_ref, kind=kind, status=ReconExceptionStatus.OPEN)
            .first()
        )
        if found is None:
            return False
        _close(found, status=ReconExceptionStatus.RESOLVED, resolution=resolution, actor=actor, action="recon.resolve")
    return True


def recon_exception_set(*, exception_id: int, status: str, actor: str, reason: str) -> None:
    """An operator ignores an exception, or marks it received, with a reason; audited."""
    if status not in (ReconExceptionStatus.IGNORED, ReconExceptionStatus.RESOLVED):
        raise SettlementError("recon_status_invalid", f"unknown status {status!r}")
    with transaction.atomic():
        found = ReconException.objects.select_for_update().get(pk=exception_id)
        _close(found, status=status, resolution=reason, actor=actor, action=f"recon.{status}")
