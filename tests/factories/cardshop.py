import factory

from cardshop.models import DeliveryKind, Product
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
