"""Issue 9 point 13: one client-IP function for every limit and cap; IPv6 counted by /64."""

import pytest
from django.core.cache import cache

from cardshop.models import Order
from core.client_ip import client_ip, client_ip_key, ip_group
from core.errors import DomainError
from tests.cardshop.helpers import buy

pytestmark = pytest.mark.django_db

SAME_64_A = "2001:db8:1:2::1"
SAME_64_B = "2001:db8:1:2:ffff:ffff:ffff:fffe"
OTHER_64 = "2001:db8:1:3::1"


@pytest.fixture(autouse=True)
def _fresh_limits():
    cache.clear()
    yield
    cache.clear()


def test_key_groups_ipv6_by_64_and_keeps_ipv4(rf):
    assert client_ip_key(rf.get("/", REMOTE_ADDR=SAME_64_A)) == "2001:db8:1:2::/64"
    assert client_ip_key(rf.get("/", REMOTE_ADDR=SAME_64_B)) == "2001:db8:1:2::/64"
    assert client_ip_key(rf.get("/", REMOTE_ADDR=OTHER_64)) == "2001:db8:1:3::/64"
    assert client_ip_key(rf.get("/", REMOTE_ADDR="203.0.113.7")) == "203.0.113.7"
    assert client_ip_key(rf.get("/", REMOTE_ADDR="::ffff:203.0.113.7")) == "203.0.113.7"
    assert client_ip(rf.get("/", REMOTE_ADDR="::ffff:203.0.113.7")) == "203.0.113.7"
    assert ip_group("garbage") == ""


def test_proxy_header_is_honoured_only_when_configured(rf, settings):
    settings.CARDSHOP_CLIENT_IP_HEADER = ""
    request = rf.get("/", REMOTE_ADDR="10.0.0.9", HTTP_X_REAL_IP="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert client_ip(request) == "10.0.0.9"
    assert client_ip_key(request) == "10.0.0.9"
    settings.CARDSHOP_CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    assert client_ip(request) == "203.0.113.7"
    assert client_ip_key(rf.get("/", REMOTE_ADDR="10.0.0.9", HTTP_X_REAL_IP=SAME_64_A)) == "2001:db8:1:2::/64"


def _lookup(client, needle, **meta):
    return client.post("/orders/lookup/", {"order_no_or_email": needle, "query_password": "whatever1"}, **meta)


def test_lookup_limit_is_shared_within_a_64_and_not_across(client, product, settings):
    settings.CARDSHOP_LOOKUP_RATE_IP = "2/h"
    assert _lookup(client, "20260000000000000001", REMOTE_ADDR=SAME_64_A).status_code == 404
    assert _lookup(client, "20260000000000000002", REMOTE_ADDR=SAME_64_B).status_code == 404
    assert _lookup(client, "20260000000000000003", REMOTE_ADDR=SAME_64_B.replace("fffe", "1")).status_code == 429
    assert _lookup(client, "20260000000000000004", REMOTE_ADDR=OTHER_64).status_code == 404


def test_lookup_limit_follows_the_proxy_header_when_configured(client, product, settings):
    settings.CARDSHOP_LOOKUP_RATE_IP = "1/h"
    settings.CARDSHOP_CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    # One proxy (same REMOTE_ADDR) in front of two buyers: each buyer has their own budget.
    assert (
        _lookup(client, "20260000000000000001", REMOTE_ADDR="10.0.0.1", HTTP_X_REAL_IP="203.0.113.1").status_code == 404
    )
    assert (
        _lookup(client, "20260000000000000002", REMOTE_ADDR="10.0.0.1", HTTP_X_REAL_IP="203.0.113.2").status_code == 404
    )
    assert (
        _lookup(client, "20260000000000000003", REMOTE_ADDR="10.0.0.1", HTTP_X_REAL_IP="203.0.113.1").status_code == 429
    )


def test_lookup_limit_ignores_a_forged_header_when_not_configured(client, product, settings):
    settings.CARDSHOP_LOOKUP_RATE_IP = "1/h"
    settings.CARDSHOP_CLIENT_IP_HEADER = ""
    assert (
        _lookup(client, "20260000000000000001", REMOTE_ADDR="10.0.0.1", HTTP_X_REAL_IP="203.0.113.1").status_code == 404
    )
    assert (
        _lookup(client, "20260000000000000002", REMOTE_ADDR="10.0.0.1", HTTP_X_REAL_IP="203.0.113.2").status_code == 429
    )


def test_pending_order_cap_counts_a_whole_ipv6_64(product, settings):
    settings.CARDSHOP_MAX_PENDING_PER_BUYER = 2
    buy(product, email="a@example.com", ip=SAME_64_A)
    buy(product, email="b@example.com", ip=SAME_64_B)
    with pytest.raises(DomainError) as refused:
        buy(product, email="c@example.com", ip="2001:db8:1:2::abcd")
    assert refused.value.code == "too_many_pending"
    assert Order.objects.count() == 2
    buy(product, email="d@example.com", ip=OTHER_64)  # the neighbouring /64 is another buyer
    assert Order.objects.count() == 3


def test_pending_order_cap_treats_ipv4_mapped_ipv6_as_ipv4(product, settings):
    settings.CARDSHOP_MAX_PENDING_PER_BUYER = 1
    buy(product, email="a@example.com", ip="203.0.113.9")
    with pytest.raises(DomainError):
        buy(product, email="b@example.com", ip="::ffff:203.0.113.9")
