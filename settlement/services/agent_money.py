"""What the platform owes an agent: its commission payable, read for a payout under the agent's payout destination lock.

Every sale credits the agent's `agent_commission_payable` and a refund debits it back. The account keeps no balance
row (BALANCE_ROW_KINDS): its balance is the sum of its entries, so a sale only inserts entries and never waits on
another sale of the same agent. Payouts are serialised instead on the agent's PayoutDestination row, which sales
never touch; a payout reads the balance after taking that lock, so two payout runs cannot both hold the same money.

A refund after the agent was paid out can take the payable below zero: the agent then owes the platform, and later
commissions net it (no payout until the balance is back at the schedule's minimum). Nothing refuses the negative
balance: there is no row to carry a CHECK, and the refund must be booked whatever the agent was paid.
"""

from __future__ import annotations

from settlement.ledger import ledger_account
from settlement.locks import payout_destination_locked
from settlement.models import AccountKind, LedgerAccount, PartyKind


def agent_payable_locked(*, agent_id: int, currency: str) -> LedgerAccount:
    """The agent's commission payable (created on first use), with the agent's payout destination locked: read its
    balance (`account_balance`) after this, in the same transaction."""
    payout_destination_locked(party_kind=PartyKind.AGENT, party_id=agent_id, currency=currency)
    return ledger_account(
        party_kind=PartyKind.AGENT, party_id=agent_id, kind=AccountKind.AGENT_COMMISSION_PAYABLE, currency=currency
    )
