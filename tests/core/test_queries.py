"""core.queries.one_or_none: the row of a unique lookup or None, compiled without an ORDER BY."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cardshop.models import Product
from core.queries import one_or_none

pytestmark = pytest.mark.django_db


def test_the_row_or_none_and_no_order_by(product):
    with CaptureQueriesContext(connection) as captured:
        found = one_or_none(Product.objects.filter(slug=product.slug).select_related("merchant"))
        missing = one_or_none(Product.objects.filter(slug="no-such-product"))
    assert found == product and found.merchant == product.merchant
    assert missing is None
    # Product is ordered by default (sort_order, pk): first() would have sent that ORDER BY.
    assert all("ORDER BY" not in q["sql"] for q in captured.captured_queries)
    assert "ORDER BY" in str(Product.objects.filter(slug=product.slug).query)
