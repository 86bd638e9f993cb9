"""The only payments functions other apps call. Contracts in, contracts out."""

from payments.channels.registry import notify_methods as channel_notify_methods
from payments.services.accounts import (
    channel_account_configure,
    channel_account_fee_learned,
)
from payments.services.adapters import channel_accounts_with
from payments.services.balances import channel_balance
from payments.services.demo import demo_payments_backdate
from payments.services.fees import payment_fee_facts
from payments.services.ledger_facts import payments_succeeded_out_trade_nos, refunds_succeeded
from payments.services.payments import (
    notification_apply,
    payment_channels_for_references,
    payment_for_reference,
    payment_live_for_reference,
    payment_options,
    payment_query,
    payment_start,
    payments_claim_due,
    payments_close_for_reference,
    payments_close_for_switch,
    payments_for_reference,
    query_result_apply,
    references_paid_more_than_once,
)
from payments.services.payouts import payout_execute
from payments.services.refunds import (
    extra_payments_refund_automatically,
    payment_refund_request,
    refund_execute,
    refund_for_reference,
    refund_request,
    refund_result_apply,
    refund_view,
    refunds_claim_due,
    refunds_for_reference,
)
from payments.services.splits import (
    split_execute,
    split_notification_apply,
    split_notification_is,
    split_request,
    split_result_apply,
    split_retry,
    split_view,
    splits_claim_due,
)
from payments.services.statements import (
    channel_account_currencies,
    channel_account_names,
    payment_exists,
    payment_succeeded,
    refund_status,
    statement_expected,
    statement_fetch,
)
from payments.services.stats import (
    payment_outcomes_by_channel,
    payment_totals_by_method,
    refunds_open,
)

__all__ = [
    "split_execute",
    "split_notification_apply",
    "split_notification_is",
    "split_request",
    "split_result_apply",
    "split_retry",
    "split_view",
    "splits_claim_due",
    "statement_expected",
    "channel_accounts_with",
    "channel_balance",
    "channel_account_names",
    "channel_account_currencies",
    "payment_exists",
    "payment_succeeded",
    "refund_status",
    "statement_fetch",
    "payout_execute",
    "demo_payments_backdate",
    "channel_account_configure",
    "channel_account_fee_learned",
    "channel_notify_methods",
    "notification_apply",
    "payment_fee_facts",
    "payment_channels_for_references",
    "payment_for_reference",
    "payment_live_for_reference",
    "payment_options",
    "payment_query",
    "payment_start",
    "payments_claim_due",
    "payments_for_reference",
    "payments_close_for_reference",
    "payments_close_for_switch",
    "query_result_apply",
    "references_paid_more_than_once",
    "extra_payments_refund_automatically",
    "payment_refund_request",
    "refund_execute",
    "refund_for_reference",
    "refund_request",
    "refunds_for_reference",
    "refund_result_apply",
    "refund_view",
    "refunds_claim_due",
    "payment_outcomes_by_channel",
    "payment_totals_by_method",
    "refunds_open",
    "payments_succeeded_out_trade_nos",
    "refunds_succeeded",
]
