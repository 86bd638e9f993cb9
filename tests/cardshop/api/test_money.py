"""Balances, the ledger statement and payouts through the API (issue 14): read from settlement's own books, scoped
to the key's merchant, money as minor units with its currency, payouts behind the `payouts` scope, and the
statement cursor-paged so lines booked while a client walks it neither repeat nor go missing."""

from __future__ import annotations

import pytest

from payments.contracts import PayoutOutcome, PayoutResult
from settlement.payouts import payout_outcome_apply
from tests.cardshop.api.conftest import client_for, key_for, money_for
from tests.settlement.test_payouts import sold

BALANCES, LINES, PAYOUTS = "/api/v1/balances/", "/api/v1/balance_transactions/", "/api/v1/payouts/"


def cny(amount_minor: int) -> dict:
    return {"amount_minor": amount_minor, "currency": "CNY"}


def test_no_money_yet_is_an_empty_list(api, shop_a):
    assert api.get(BALANCES).json() == {"object": "list", "data": []}
    assert api.get(LINES).json()["data"] == [] and api.get(PAYOUTS).json()["data"] == []


def test_a_sale_held_for_a_payout_shows_in_transit_then_paid_out(api, merchant, epay_account):
    payout = money_for(merchant, epay_account, paid_out=False)  # 9.99 sold: 939 available, all held for the payout
    [held] = api.get(BALANCES).json()["data"]
    assert held == {
        "currency": "CNY",
        "available": cny(0),
        "pending": cny(0),
        "reserve": cny(0),
        "owed": cny(0),
        "in_transit": cny(939),
    }
    shown = api.get(f"{PAYOUTS}{payout.payout_no}/").json()
    assert shown["state"] == "created" and shown["amount"] == cny(939) and shown["finished_at"] is None
    assert shown["payee"] == "********.com"  # masked: the payee's account is not the API's to show

    paid = PayoutOutcome(result=PayoutResult.PAID, provider_payout_no="T9", provider_status="SUCCESS")
    payout_outcome_apply(payout_no=payout.payout_no, outcome=paid)
    assert api.get(BALANCES).json()["data"][0]["in_transit"] == cny(0)
    listed = api.get(PAYOUTS, {"state": "paid"}).json()["data"]
    assert [(p["id"], p["state"]) for p in listed] == [(payout.payout_no, "paid")] and listed[0]["finished_at"]
    assert api.get(PAYOUTS, {"state": "open"}).json()["data"] == []


def test_the_statement_shows_each_movement_in_the_merchants_favour_or_against_it(api, merchant, epay_account):
    payout = money_for(merchant, epay_account)
    lines = api.get(LINES).json()["data"]
    assert [(line["kind"], line["account"], line["amount"]) for line in lines] == [
        ("payout", "payouts_in_transit", cny(-939)),  # paid out: left the shop for the merchant's payee
        ("payout", "payouts_in_transit", cny(939)),  # held for the payout ...
        ("payout", "merchant_available", cny(-939)),  # ... taken from available
        ("sale", "merchant_available", cny(939)),  # the sale, net of the platform's fee (T+0: available at once)
    ]
    assert {line["reference"] for line in lines[:3]} == {payout.payout_no}
    assert [line["amount"] for line in api.get(LINES, {"account": "merchant_available"}).json()["data"]] == [
        cny(-939),
        cny(939),
    ]
    assert api.get(LINES, {"currency": "USD"}).json()["data"] == []


def test_statement_pages_stay_stable_while_sales_are_booked(api, merchant, epay_account):
    money_for(merchant, epay_account)  # 4 lines
    for _ in range(3):
        sold(merchant, epay_account)  # 1 line each
    everything = [line["id"] for line in api.get(LINES, {"limit": 100}).json()["data"]]
    assert len(everything) == 7 and everything == sorted(everything, reverse=True)
    page = api.get(LINES, {"limit": 3}).json()
    assert page["has_more"] is True and page["previous"] is None
    seen = [line["id"] for line in page["data"]]
    sold(merchant, epay_account)  # booked at the top while the client is on page 1
    while page["has_more"]:
        page = api.get(page["next"]).json()
        seen += [line["id"] for line in page["data"]]
    assert seen == everything
    back = api.get(page["previous"]).json()  # and back from the last page: the page before it
    assert [line["id"] for line in back["data"]] == everything[3:6]


@pytest.mark.parametrize(
    "cursor", ["nonsense", "YmVmb3JlOi0x", "c2lkZXdheXM6MQ==", "YmVmb3JlOjFlMw==", "YmVmb3JlOiAxMg=="]
)
def test_a_cursor_we_did_not_make_is_refused(api, shop_a, cursor):
    refused = api.get(LINES, {"cursor": cursor})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "resource_missing"


def test_filters_are_checked(api, shop_a):
    for params in ({"account": "platform_revenue"}, {"currency": "XXX"}, {"acount": "merchant_available"}):
        refused = api.get(LINES, params)
        assert refused.status_code == 400, params
    assert api.get(PAYOUTS, {"state": "lost"}).status_code == 400
    assert api.get(BALANCES, {"currency": "CNY"}).status_code == 400  # no filter there: refused, not ignored


def test_payouts_need_the_payouts_scope(merchant, epay_account):
    payout = money_for(merchant, epay_account)
    reader = client_for(key_for(merchant, scopes=["read"]))
    for url in (PAYOUTS, f"{PAYOUTS}{payout.payout_no}/"):
        refused = reader.get(url)
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error", url
    assert reader.get(BALANCES).status_code == 200 and reader.get(LINES).status_code == 200
    assert client_for(key_for(merchant, scopes=["payouts"])).get(PAYOUTS).json()["data"][0]["id"] == payout.payout_no
