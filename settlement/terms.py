"""Everything a sale posting reads, in one query: the merchant's agent chain, its active fee plan in the
currency, and the ids of the ledger accounts the sale's lines go to.

Why one hand-written query: the sale is booked inside the paid callback's transaction, the hottest path of the
shop (issue 11 asks the ledger to add at most a fifth to a callback's p99). Read through the ORM, the plan, the
chain and the accounts were three queries and about 3 ms on this machine; this is one statement, portable
across PostgreSQL and SQLite (LEFT JOINs and scalar subqueries only), prepared on PostgreSQL (core.prepared). The agent chain is walked by
joins as in `core.parties.agent_chain_for_merchant` (bounded by SETTLEMENT_AGENT_MAX_DEPTH);
tests/settlement/test_sale_terms.py checks the two agree, and that the plan and accounts match the ORM's.

An account not yet created comes back as None: `sales` creates it (first sale of a party) through
`ledger.ledger_accounts`, behind its unique constraint.
"""

# ruff: noqa: S608 -- only table names from the models and constant column names are formatted into the SQL;
# every value is a query parameter.

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.db import connection

from core.models import Agent, Merchant, agent_max_depth
from core.prepared import prepared_cursor
from settlement.models import PLATFORM_PARTY_ID, AccountKind, FeePlan, LedgerAccount, PartyKind
from settlement.splits import PlanTerms

PLAN_COLUMNS = (
    "platform_rate_bp",
    "platform_fixed_minor",
    "reserve_bp",
    "agent_commission_bp",
    "cycle",
    "n_days",
    "reserve_days",
    "refund_fee_borne_by",
    "split_at_provider",
)


@dataclass(frozen=True)
class SalePlan(PlanTerms):
    """The active fee plan's numbers (a FeePlan's fields a sale reads), or the default plan's."""

    cycle: str = ""
    n_days: int = 0
    reserve_days: int = 0
    refund_fee_borne_by: str = ""
    split_at_provider: bool = False


@dataclass(frozen=True)
class SaleTerms:
    merchant_found: bool
    agent_chain: tuple[int, ...]  # level 1 (the merchant's own agent) first
    plan: SalePlan | None  # None: the merchant has no active plan in the currency
    account_ids: dict[tuple[str, int, str], int | None]  # (party kind, party id, kind) -> id, None if not created


def _account_specs(merchant_id: int, channel_account_id: int, depth: int) -> list[tuple[str, int | None, str]]:
    """(party kind, party id, account kind) of every account a sale may credit or debit; an agent level's party
    id is None (the query takes it from the chain). T+0's merchant available and owed are read locked by
    `merchant_money` instead."""
    return [
        (PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_CLEARING),
        (PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_FEE_EXPENSE),
        (PartyKind.MERCHANT, merchant_id, AccountKind.MERCHANT_PENDING),
        (PartyKind.MERCHANT, merchant_id, AccountKind.MERCHANT_RESERVE),
        (PartyKind.PLATFORM, PLATFORM_PARTY_ID, AccountKind.PLATFORM_REVENUE),
        *[(PartyKind.AGENT, None, AccountKind.AGENT_COMMISSION_PAYABLE)] * depth,
    ]


def _chain_columns(depth: int) -> list[str]:
    """The SQL columns holding the chain's agent ids: level 1 is the merchant's agent, level k+1 its parent."""
    return ["m.agent_id", *[f"a{level}.parent_id" for level in range(1, depth)]]


@cache
def _sql(depth: int) -> str:
    """The query for an agent chain of at most `depth` levels (the setting; cached per depth)."""
    merchant, agent, plan, account = (
        Merchant._meta.db_table,
        Agent._meta.db_table,
        FeePlan._meta.db_table,
        LedgerAccount._meta.db_table,
    )
    chain = _chain_columns(depth)
    joins = [f"LEFT JOIN {agent} a{level} ON a{level}.id = {chain[level - 1]}" for level in range(1, depth)]
    parties = iter(chain)
    accounts = [
        f"(SELECT x.id FROM {account} x WHERE x.party_kind = %s "
        f"AND x.party_id = {'%s' if party is not None else next(parties)} AND x.kind = %s AND x.currency = %s)"
        for _, party, _ in _account_specs(0, 0, depth)
    ]
    return (
        f"SELECT {', '.join(chain)}, p.id, {', '.join('p.' + c for c in PLAN_COLUMNS)}, {', '.join(accounts)} "
        f"FROM {merchant} m {' '.join(joins)} "
        f"LEFT JOIN {plan} p ON p.merchant_id = m.id AND p.currency = %s AND p.is_active = %s "
        "WHERE m.id = %s"
    )


def sale_terms_read(*, merchant_id: int, currency: str, channel_account_id: int) -> SaleTerms:
    depth = agent_max_depth()
    specs = _account_specs(merchant_id, channel_account_id, depth)
    params: list = []
    for party_kind, party, kind in specs:
        params += [party_kind, *([] if party is None else [party]), kind, currency]
    params += [currency, True, merchant_id]
    with prepared_cursor() as cursor:
        cursor.execute(_sql(depth), params)
        row = cursor.fetchone()
    if row is None:
        return SaleTerms(merchant_found=False, agent_chain=(), plan=None, account_ids={})
    plan_at = depth + 1
    accounts_at = plan_at + len(PLAN_COLUMNS)
    chain: list[int] = []
    for agent_id in row[:depth]:
        if agent_id is None:
            break
        chain.append(agent_id)
    plan = None
    if row[depth] is not None:
        values = dict(zip(PLAN_COLUMNS, row[plan_at:accounts_at], strict=True))
        levels = FeePlan._meta.get_field("agent_commission_bp").from_db_value(
            values.pop("agent_commission_bp"), None, connection
        )
        values["split_at_provider"] = bool(values["split_at_provider"])  # SQLite answers 0 / 1
        plan = SalePlan(agent_commission_bp=tuple(levels or ()), **values)
    resolved: dict[tuple[str, int, str], int | None] = {}
    agents = iter(chain)
    for (party_kind, party, kind), account_id in zip(specs, row[accounts_at:], strict=True):
        if party is None:  # an agent level: its party is the chain's agent at that level, if there is one
            party = next(agents, None)
            if party is None:
                continue
        resolved[(party_kind, party, kind)] = account_id
    return SaleTerms(merchant_found=True, agent_chain=tuple(chain), plan=plan, account_ids=resolved)
