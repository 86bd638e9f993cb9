from datetime import timedelta

import factory
from django.utils import timezone

from cardshop.models import DeliveryKind, Order, OrderState, Product
from core import ids
from tests.factories.core import MerchantFactory


class ProductFactory(factory.django.DjangoModelFactory):
    """A unique-secret product; pass `secrets_count=N` to import N random card secrets through the service."""

    class Meta:
        model = Product
        skip_postgeneration_save = True

    merchant = factory.SubFactory(MerchantFactory)
    name = "Gift code"
    slug = factory.Sequence(lambda n: f"product-{n}")
    price_minor = 990
    currency = "CNY"
    max_quantity = 5
    delivery_kind = DeliveryKind.UNIQUE

    @factory.post_generation
    def secrets_count(self, create, extracted, **kwargs):
        if create and extracted:
            import secrets

            from cardshop.services.stock import card_secrets_import

            codes = "\n".join(f"CODE-{i:04d}-{secrets.token_hex(4)}" for i in range(extracted))
            card_secrets_import(product_id=self.pk, text=codes)


class OrderFactory(factory.django.DjangoModelFactory):
    """An order in any state at any time: `state=` as the FSM would have left it, `created_at=` (auto_now_add
    otherwise) and `paid_at=` / `refunded_at=` as the transitions would have stamped them."""

    class Meta:
        model = Order

    product = factory.SubFactory(ProductFactory)
    merchant = factory.SelfAttribute("product.merchant")
    order_no = factory.LazyFunction(ids.order_no)
    quantity = 1
    list_price_minor = factory.SelfAttribute("product.price_minor")
    unit_price_minor = factory.SelfAttribute("product.price_minor")
    amount_minor = factory.LazyAttribute(lambda o: o.unit_price_minor * o.quantity)
    currency = factory.SelfAttribute("product.currency")
    email = "buyer@example.com"
    query_password_hash = "!"  # unusable: lookups never match a factory order
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=15))
    state = OrderState.PENDING
    created_at = None

    @classmethod
    def _create(cls, model_class, *args, created_at=None, **kwargs):
        order = super()._create(model_class, *args, **kwargs)
        if created_at is not None:
            Order.objects.filter(pk=order.pk).update(created_at=created_at)
            order.created_at = created_at
        return order
