"""Paying out through a channel account: the one place settlement's payouts reach an adapter (I/O, no lock).

`payout_execute` sends a payout, or, when an earlier attempt may have reached the provider (`in_doubt`), asks
about it first and sends it again under the same payout_no only if the provider does not know it. The
provider's idempotency key is the payout_no, so a resend pays at most once.
"""

from __future__ import annotations

import logging

from core.money import Money
from payments.channels.base import (
    Capability,
    PayoutObservation,
    PayoutRequest,
    PayoutState,
    Retryable,
    Terminal,
    Unknown,
)
from payments.contracts import PayoutOutcome, PayoutResult
from payments.models import ChannelAccount
from payments.services.adapters import adapter_for

log = logging.getLogger(__name__)

_RESULTS = {
    PayoutState.SUCCEEDED: PayoutResult.PAID,
    PayoutState.FAILED: PayoutResult.FAILED,
    PayoutState.PENDING: PayoutResult.PENDING,
}


def _outcome(seen: PayoutObservation, request: PayoutRequest) -> PayoutOutcome:
    if seen.payout_no != request.payout_no or seen.amount != request.amount:
        # A verified answer about another payout or amount is a provider bug: resolve by query, never trust it.
        log.error(
            "payout answer for %s names %s %s; treated as unknown", request.payout_no, seen.payout_no, seen.amount
        )
        return PayoutOutcome(result=PayoutResult.UNKNOWN, provider_status="mismatch")
    return PayoutOutcome(
        result=_RESULTS[seen.status],
        provider_payout_no=seen.provider_payout_no,
        provider_status=seen.provider_status,
        failure_reason=seen.failure_reason,
    )


def payout_execute(
    *,
    channel_account_id: int,
    payout_no: str,
    amount: Money,
    payee: str,
    payee_name: str,
    remark: str,
    provider_payout_no: str = "",
    in_doubt: bool = False,
) -> PayoutOutcome:
    account = ChannelAccount.objects.get(pk=channel_account_id)
    adapter = adapter_for(account)
    if Capability.PAYOUT not in adapter.capabilities:  # nothing can be sent: the hold goes back
        return PayoutOutcome(
            result=PayoutResult.FAILED,
            provider_status="payout_unsupported",
            failure_reason=f"channel {account.code} cannot pay out",
        )
    request = PayoutRequest(
        payout_no=payout_no,
        amount=amount,
        payee=payee,
        payee_name=payee_name,
        remark=remark,
        provider_payout_no=provider_payout_no,
    )
    try:
        if in_doubt:
            seen = adapter.payout_query(request)
            if seen is not None:
                return _outcome(seen, request)
        return _outcome(adapter.payout(request), request)
    except Terminal as exc:  # refused as sent: nothing moved
        return PayoutOutcome(result=PayoutResult.FAILED, provider_status=exc.code, failure_reason=str(exc)[:200])
    except Retryable as exc:
        log.warning("payout %s not sent (%s); sent again later under the same number", payout_no, exc.code)
        return PayoutOutcome(result=PayoutResult.NOT_SENT, provider_status=exc.code)
    except Unknown as exc:
        log.warning("payout %s outcome unknown (%s); the janitor queries", payout_no, exc.code)
        return PayoutOutcome(result=PayoutResult.UNKNOWN, provider_status=exc.code)
