"""What a channel keeps of a payment it collected, for the ledger's sale posting."""

from __future__ import annotations

from core.money import Money
from payments.contracts import PaymentFeeFacts
from payments.models import Payment
from payments.routing import channel_fee_minor


def payment_fee_facts(*, out_trade_no: str) -> PaymentFeeFacts:
    """The channel account and fee of one payment (see `fee_facts_of`)."""
    return fee_facts_of(Payment.objects.select_related("account").get(out_trade_no=out_trade_no))


def fee_facts_of(payment: Payment) -> PaymentFeeFacts:
    """The channel account and fee of a payment already read (routing's formula, routing.channel_fee_minor),
    never more than the amount: a fixed fee larger than a tiny sale takes the whole sale. The paid path hands
    these to the ledger with its outcome, so the sale posting does not read the payment again."""
    account = payment.account
    fee = channel_fee_minor(payment.amount_minor, rate_bp=account.fee_rate_bp, fixed_minor=account.fee_fixed_minor)
    return PaymentFeeFacts(
        out_trade_no=payment.out_trade_no,
        reference=payment.reference,
        account_id=account.pk,
        channel_code=account.code,
        amount=Money(payment.amount_minor, payment.currency),
        fee=Money(min(fee, payment.amount_minor), payment.currency),
        refund_returns_fee=account.refund_returns_fee,
        split_to_account_id=account.split_to_id if account.owner_merchant_id is not None else None,
    )
