"""Issue 9 point 14: withdraw an unsold secret (audited, out of every stock count); duplicates are found
across all of the merchant's products; uploads are read as UTF-8, else GB18030, and say which."""

import importlib

import pytest
from django.apps import apps

from cardshop import selectors
from cardshop.models import CardSecret, OrderState, SecretStatus
from cardshop.services.stock import card_secrets_import, secret_withdraw
from core.errors import DomainError
from core.models import AuditEvent
from tests.cardshop.helpers import buy
from tests.conftest import make_product

pytestmark = pytest.mark.django_db


def secret_of(product, text: str) -> CardSecret:
    return next(s for s in CardSecret.objects.filter(product=product) if s.secret == text)


# -- withdrawal --------------------------------------------------------------------------------------------


def test_an_unsold_secret_is_withdrawn_with_reason_audited_and_leaves_the_stock(merchant, epay_account):
    product = make_product(merchant, secrets_count=0, max_quantity=5)
    card_secrets_import(product_id=product.pk, text="KEEP-1\nLEAKED-2\nKEEP-3")
    leaked = secret_of(product, "LEAKED-2")
    assert selectors.product_stock(selectors.product_on_sale(slug=product.slug)) == 3

    secret_withdraw(secret_id=leaked.pk, reason="  posted on a forum  ", actor="ops@example.com")

    leaked.refresh_from_db()
    assert leaked.status == SecretStatus.WITHDRAWN
    assert leaked.withdraw_reason == "posted on a forum"
    assert leaked.withdrawn_at is not None
    assert leaked.order_id is None
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.target) == (
        "ops@example.com",
        "card_secret_withdraw",
        f"cardshop.cardsecret:{leaked.pk}",
    )
    assert event.detail == {"product_id": product.pk, "reason": "posted on a forum"}
    assert selectors.product_stock(selectors.product_on_sale(slug=product.slug)) == 2
    assert selectors.product_stock(product) == 2
    # No checkout can take it: the three-unit order finds only two.
    with pytest.raises(DomainError) as short:
        buy(product, qty=3)
    assert short.value.code == "out_of_stock"
    order = buy(product, qty=2)
    assert sorted(s.secret for s in order.secrets.all()) == ["KEEP-1", "KEEP-3"]


def test_a_reserved_or_sold_secret_is_never_withdrawn(merchant, epay_account):
    product = make_product(merchant, secrets_count=0)
    card_secrets_import(product_id=product.pk, text="RESERVED-1\nSOLD-2")
    order = buy(product, qty=1)
    reserved = CardSecret.objects.get(order=order)
    assert reserved.status == SecretStatus.RESERVED
    sold = CardSecret.objects.exclude(pk=reserved.pk).get()
    CardSecret.objects.filter(pk=sold.pk).update(status=SecretStatus.SOLD, order=order)

    for secret in (reserved, sold):
        with pytest.raises(DomainError) as refused:
            secret_withdraw(secret_id=secret.pk, reason="leaked", actor="ops")
        assert refused.value.code == "secret_not_withdrawable"
    assert set(CardSecret.objects.values_list("status", flat=True)) == {SecretStatus.RESERVED, SecretStatus.SOLD}
    assert CardSecret.objects.filter(withdrawn_at__isnull=False).count() == 0
    assert AuditEvent.objects.count() == 0
    order.refresh_from_db()
    assert order.state == OrderState.PENDING


def test_withdrawal_needs_a_reason_and_happens_once(merchant):
    product = make_product(merchant, secrets_count=0)
    card_secrets_import(product_id=product.pk, text="BAD-1")
    secret = CardSecret.objects.get()
    with pytest.raises(DomainError) as no_reason:
        secret_withdraw(secret_id=secret.pk, reason="   ", actor="ops")
    assert no_reason.value.code == "withdraw_reason"
    secret.refresh_from_db()
    assert secret.status == SecretStatus.AVAILABLE
    secret_withdraw(secret_id=secret.pk, reason="does not redeem", actor="ops")
    with pytest.raises(DomainError) as again:
        secret_withdraw(secret_id=secret.pk, reason="again", actor="ops")
    assert again.value.code == "already_withdrawn"
    assert AuditEvent.objects.count() == 1
    with pytest.raises(DomainError) as missing:
        secret_withdraw(secret_id=secret.pk + 1000, reason="x", actor="ops")
    assert missing.value.code == "not_found"


def test_a_withdrawn_secret_cannot_be_imported_again(merchant):
    product = make_product(merchant, secrets_count=0)
    card_secrets_import(product_id=product.pk, text="LEAKED-9")
    secret_withdraw(secret_id=CardSecret.objects.get().pk, reason="leaked", actor="ops")
    again = card_secrets_import(product_id=product.pk, text="LEAKED-9")
    assert (again.imported, again.duplicates) == (0, 1)
    assert CardSecret.objects.count() == 1


# -- duplicates across the merchant ------------------------------------------------------------------------


def test_a_secret_in_another_product_of_the_merchant_is_a_duplicate(merchant):
    a = make_product(merchant, secrets_count=0)
    b = make_product(merchant, secrets_count=0)
    card_secrets_import(product_id=a.pk, text="SHARED-1\nONLY-A")
    result = card_secrets_import(product_id=b.pk, text="SHARED-1\nONLY-B\nONLY-B")
    assert (result.imported, result.duplicates, result.duplicates_elsewhere) == (1, 2, 1)
    assert [s.secret for s in CardSecret.objects.filter(product=b)] == ["ONLY-B"]
    assert CardSecret.objects.count() == 3


def test_secrets_imported_before_merchant_hashes_are_found_after_the_migration(merchant):
    a = make_product(merchant, secrets_count=0)
    b = make_product(merchant, secrets_count=0)
    card_secrets_import(product_id=a.pk, text="OLD-1\nOLD-2")
    CardSecret.objects.update(merchant_hash="")  # as rows written before this change
    # Even before the backfill the same product still finds its own rows by the per-product hash.
    assert card_secrets_import(product_id=a.pk, text="OLD-1").imported == 0

    backfill = importlib.import_module("cardshop.migrations.0006_storefront_stock_hygiene").backfill_merchant_hash
    backfill(apps, None)

    assert CardSecret.objects.filter(merchant_hash="").count() == 0
    result = card_secrets_import(product_id=b.pk, text="OLD-2\nNEW-3")
    assert (result.imported, result.duplicates_elsewhere) == (1, 1)


# -- encodings ---------------------------------------------------------------------------------------------

CHINESE = ["点卡-一二三-4567", "充值卡：七八九零", "礼品卡 ABC-壹贰叁"]


def test_a_gbk_upload_is_read_as_gb18030_and_says_so(merchant):
    product = make_product(merchant, secrets_count=0)
    data = "\r\n".join(CHINESE).encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # the old reading (utf-8, errors="replace") stored U+FFFD here
    result = card_secrets_import(product_id=product.pk, upload=data)
    assert (result.imported, result.invalid, result.encoding) == (3, 0, "gb18030")
    stored = sorted(s.secret for s in CardSecret.objects.filter(product=product))
    assert stored == sorted(CHINESE)
    assert not any("\ufffd" in s for s in stored)


def test_a_utf8_upload_with_a_bom_is_read_as_utf8(merchant):
    product = make_product(merchant, secrets_count=0)
    result = card_secrets_import(product_id=product.pk, upload=("\ufeff" + "\n".join(CHINESE)).encode("utf-8"))
    assert (result.imported, result.encoding) == (3, "utf-8")
    assert sorted(s.secret for s in CardSecret.objects.all()) == sorted(CHINESE)


def test_pasted_text_and_an_upload_import_together(merchant):
    product = make_product(merchant, secrets_count=0)
    result = card_secrets_import(product_id=product.pk, text="PASTED-1", upload="文件-2".encode("gb18030"))
    assert (result.imported, result.encoding) == (2, "gb18030")
    assert card_secrets_import(product_id=product.pk, text="PASTED-3").encoding == ""


def test_an_undecodable_upload_is_refused_and_stores_nothing(merchant):
    product = make_product(merchant, secrets_count=0)
    with pytest.raises(DomainError) as refused:
        card_secrets_import(product_id=product.pk, upload=b"GOOD-1\n\xff\xfe\xff")
    assert refused.value.code == "undecodable"
    assert CardSecret.objects.count() == 0
