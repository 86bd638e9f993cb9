"""Adjustments: an operator's correction is a new balanced posting with a reason, audited; never an edit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db import transaction

from core.audit import audit_record
from settlement.contracts import AdjustmentLine, SettlementError
from settlement.ledger import Line, ledger_accounts, ledger_post
from settlement.models import LedgerTransaction, TransactionKind


def adjustment_post(
    *,
    currency: str,
    lines: Sequence[AdjustmentLine],
    reason: str,
    actor: str,
    key: str = "",
    reference: str = "",
) -> LedgerTransaction:
    """Post the lines (debit +, credit -) as one adjustment and record who did it and why, together.

    `key` defaults to a fresh `adjustment:<uuid>`; reconciliation passes its own natural key so a retry is a
    no-op. The ledger's rules hold as for any posting: balanced, whole minor units, no account flagged
    no-overdraft below zero (SettlementError, nothing written)."""
    reason = reason.strip()
    if not reason:
        raise SettlementError("reason_required", "an adjustment needs a reason")
    if not actor:
        raise SettlementError("actor_required", "an adjustment needs the operator who makes it")
    key = key or f"adjustment:{uuid.uuid4().hex}"
    with transaction.atomic():
        specs = [(line.party_kind, line.party_id, line.account_kind) for line in lines]
        accounts = ledger_accounts(currency=currency, specs=specs)
        posting = [
            Line(account_id=accounts[spec].pk, amount_minor=line.amount_minor, currency=currency)
            for spec, line in zip(specs, lines, strict=True)
        ]
        txn = ledger_post(
            key=key,
            kind=TransactionKind.ADJUSTMENT,
            reference=reference,
            lines=posting,
            memo=reason[:255],
            accounts={a.pk: a for a in accounts.values()},
        )
        if not txn.replayed:
            audit_record(
                actor=actor,
                action="ledger.adjustment",
                target=f"ledgertransaction:{txn.pk}",
                key=key,
                reason=reason,
                currency=currency,
                lines=[[s[0], s[1], s[2], line.amount_minor] for s, line in zip(specs, lines, strict=True)],
            )
    return txn
