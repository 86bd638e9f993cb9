"""The query-password hash: keyed and salted, verified in constant time, and older PBKDF2 hashes still verify."""

import pytest
from django.contrib.auth.hashers import check_password, identify_hasher, make_password

from core.hashers import QUERY_PASSWORD_HASHER


def test_a_query_password_hash_is_salted_and_names_no_part_of_the_password():
    one, two = (
        make_password("123456", hasher=QUERY_PASSWORD_HASHER),
        make_password("123456", hasher=QUERY_PASSWORD_HASHER),
    )
    assert one.startswith("hmac_sha256_query$") and two.startswith("hmac_sha256_query$")
    assert one != two  # own salt each: equal passwords never look equal
    assert "123456" not in one
    assert check_password("123456", one) and check_password("123456", two)
    assert not check_password("123457", one)
    assert not check_password("", one)


def test_the_hash_needs_the_key_kept_outside_the_database(settings):
    stored = make_password("123456", hasher=QUERY_PASSWORD_HASHER)
    # Whoever has the rows but not CARDSHOP_HASH_KEY cannot test a guess: under another key nothing verifies.
    settings.CARDSHOP_HASH_KEY = "another-key-" + settings.CARDSHOP_HASH_KEY
    assert not check_password("123456", stored)


def test_a_tampered_hash_does_not_verify():
    stored = make_password("123456", hasher=QUERY_PASSWORD_HASHER)
    algorithm, salt, mac = stored.split("$")
    assert not check_password("123456", f"{algorithm}${salt}x${mac}")
    assert not check_password("123456", f"{algorithm}${salt}${mac[:-2]}AA")


def test_orders_hashed_with_pbkdf2_before_still_verify():
    old = make_password("right-pass", hasher="pbkdf2_sha256_query")
    assert identify_hasher(old).algorithm == "pbkdf2_sha256_query"
    assert check_password("right-pass", old) and not check_password("wrong-pass", old)


@pytest.mark.django_db
def test_a_lookup_finds_an_order_hashed_before_the_keyed_hasher(client, product):
    from cardshop.models import Order
    from cardshop.services.checkout import order_create

    order = order_create(
        product_id=product.pk, quantity=1, email="old@example.com", query_password="old-pass", buyer_ip="10.0.0.9"
    )
    Order.objects.filter(pk=order.pk).update(
        query_password_hash=make_password("old-pass", hasher="pbkdf2_sha256_query")
    )
    resp = client.post("/orders/lookup/", {"order_no_or_email": order.order_no, "query_password": "old-pass"})
    assert resp.status_code == 302 and resp["Location"] == f"/orders/{order.order_no}/"
