"""Bulk import: duplicates in the batch and against stock are skipped and counted; invalid lines counted."""

import pytest
from django.db import connection

from cardshop.models import CardSecret
from cardshop.services.stock import card_secrets_import
from core.errors import DomainError
from tests.conftest import make_product
from tests.factories.core import MerchantFactory

pytestmark = pytest.mark.django_db


def test_import_counts_imported_duplicates_and_invalid(merchant):
    product = make_product(merchant, secrets_count=0)
    first = card_secrets_import(product_id=product.pk, text="AAA-1\nBBB-2\n\nAAA-1\n  CCC-3  \n")
    assert (first.imported, first.duplicates, first.invalid) == (3, 1, 0)
    second = card_secrets_import(product_id=product.pk, text="CCC-3\nDDD-4\n" + "X" * 1001 + "\nbad\x07bell\n")
    assert (second.imported, second.duplicates, second.invalid) == (1, 1, 2)
    assert sorted(s.secret for s in CardSecret.objects.filter(product=product)) == ["AAA-1", "BBB-2", "CCC-3", "DDD-4"]


def test_same_secret_may_exist_at_two_merchants(merchant):
    # Within one merchant a repeat is a duplicate (issue 9 point 14: tests/cardshop/test_stock_hygiene.py).
    a = make_product(merchant, secrets_count=0)
    b = make_product(MerchantFactory(), secrets_count=0)
    assert card_secrets_import(product_id=a.pk, text="SAME").imported == 1
    assert card_secrets_import(product_id=b.pk, text="SAME").imported == 1


def test_imported_secrets_are_encrypted_and_hashed_at_rest(merchant):
    product = make_product(merchant, secrets_count=0)
    card_secrets_import(product_id=product.pk, text="PLAINTEXT-SECRET-42")
    with connection.cursor() as cur:
        cur.execute("SELECT secret, secret_hash FROM cardshop_cardsecret")
        (stored, digest) = cur.fetchone()
    assert "PLAINTEXT-SECRET-42" not in stored and "PLAINTEXT-SECRET-42" not in digest
    assert len(digest) == 64


def test_reusable_products_take_no_secrets(merchant):
    product = make_product(merchant, secrets_count=0, kind="reusable", reusable_secret="https://x")
    with pytest.raises(DomainError):
        card_secrets_import(product_id=product.pk, text="A")
    assert CardSecret.objects.count() == 0
