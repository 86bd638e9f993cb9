"""Issue 10, choosing how to pay: the pay page offers only methods routing would take for this order
(amount limits, breakers), never one that would end in a 503."""

import pytest

from payments import breaker
from payments.services import channel_choice
from tests.factories.payments import EpayAccountFactory

pytestmark = pytest.mark.django_db


def _open(client, product, **kw):
    resp = client.post(
        f"/p/{product.slug}/", {"quantity": 1, "email": "a@example.com", "query_password": "secret1", **kw}
    )
    assert resp.status_code == 302, resp.content[:500]
    return client.get(resp["Location"])


def test_a_method_whose_only_account_cannot_take_the_amount_is_not_offered(client, product, epay_account):
    epay_account.max_amount_minor = product.price_minor - 1
    epay_account.save()
    channel_choice.cache_clear()
    page = _open(client, product)
    assert page.status_code == 409
    assert "No payment method can take this order right now" in page.content.decode()
    assert "pay-with-" not in page.content.decode()


def test_a_method_behind_an_open_breaker_is_not_offered(client, product, epay_account):
    other = EpayAccountFactory(base_url=epay_account.base_url, max_amount_minor=None)
    channel_choice.cache_clear()
    before = {o.method for o in _options(product)}
    assert {"alipay", "wxpay"} <= before  # epay takes both through either account
    store = breaker.breaker_store()
    store.force_open(epay_account.pk)
    store.force_open(other.pk)
    try:
        assert _options(product) == []
        page = _open(client, product)
        assert page.status_code == 409 and "pay-with-" not in page.content.decode()
    finally:
        store.release(epay_account.pk)
        store.release(other.pk)
    assert {o.method for o in _options(product)} == before


def _options(product):
    from payments import facade

    return facade.payment_options(
        currency=product.currency,
        amount_minor=product.price_minor,
        merchant_id=product.merchant_id,
        product_ref=product.slug,
    )


def test_the_pay_page_names_the_method_shows_a_decline_and_a_refused_switch_changes_nothing(
    client, product, epay_account
):
    from payments.models import Payment

    pay_url = client.post(f"/p/{product.slug}/", {"quantity": 1, "email": "a@example.com", "query_password": "s3cret"})[
        "Location"
    ]
    page = client.get(pay_url + "?method=alipay").content.decode()
    assert "Paying with Alipay" in page and 'id="switch-to-wxpay"' in page  # epay takes WeChat Pay too
    assert 'id="declined"' not in page
    Payment.objects.update(error_code="PAYERROR", decline_code="PAYERROR")  # the first attempt was declined
    assert 'id="declined"' in client.get(pay_url).content.decode()
    # epay cannot close a trade: switching would leave two payable trades, so it is refused, nothing changes.
    refused = client.post(pay_url + "switch/", {"method": "wxpay"})
    assert refused.status_code == 409 and "be changed right now" in refused.content.decode()
    assert list(Payment.objects.values_list("status", flat=True)) == ["pending"]
