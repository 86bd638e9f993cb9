import json
import secrets

import factory

from core import ids
from payments.models import ChannelAccount, Payment, PaymentStatus, Refund, RefundStatus


class EpayAccountFactory(factory.django.DjangoModelFactory):
    """An epay channel account with a fresh pid and key (register them with the simulator)."""

    class Meta:
        model = ChannelAccount

    code = "epay"
    name = "epay test"
    merchant_no = factory.LazyFunction(lambda: str(10000 + secrets.randbelow(89999)))
    base_url = "http://127.0.0.1:9"
    credentials = factory.LazyFunction(lambda: json.dumps({"key": secrets.token_hex(16)}))


class PaymentFactory(factory.django.DjangoModelFactory):
    """A payment in any status at any time (`created_at=` overrides auto_now_add). `reference` is an order no."""

    class Meta:
        model = Payment

    out_trade_no = factory.LazyFunction(ids.out_trade_no)
    reference = "T-none"
    account = factory.SubFactory(EpayAccountFactory)
    channel_code = factory.SelfAttribute("account.code")
    method = "alipay"
    amount_minor = 990
    currency = "CNY"
    status = PaymentStatus.PENDING
    created_at = None

    @classmethod
    def _create(cls, model_class, *args, created_at=None, **kwargs):
        payment = super()._create(model_class, *args, **kwargs)
        if created_at is not None:
            Payment.objects.filter(pk=payment.pk).update(created_at=created_at)
            payment.created_at = created_at
        return payment


class RefundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Refund

    refund_no = factory.LazyFunction(lambda: ids.out_trade_no("R"))
    payment = factory.SubFactory(PaymentFactory, status=PaymentStatus.REFUNDING)
    amount_minor = factory.SelfAttribute("payment.amount_minor")
    currency = factory.SelfAttribute("payment.currency")
    status = RefundStatus.PENDING
    reason = "buyer asked"
    requested_by = "op"
