from __future__ import annotations

import statistics

import pytest

from risk.schema import FEATURES
from risk.training.generator import ATTACK_PATTERNS, GOOD_PATTERNS, TrafficMix, generate, holdout_split

MIX = TrafficMix(rows=6_000)


@pytest.fixture(scope="module")
def rows():
    return generate(MIX, seed=7)


def test_same_seed_same_rows_other_seed_other_rows(rows):
    assert generate(MIX, seed=7) == rows
    assert generate(MIX, seed=8) != rows


def test_every_row_has_every_feature_with_its_type_plus_label_pattern_and_time(rows):
    for row in rows:
        assert set(row) == {f.name for f in FEATURES} | {"label", "pattern", "at"}
        for feature in FEATURES:
            value = row[feature.name]
            assert type(value) is feature.kind, (feature.name, value)
        assert row["label"] == (0 if row["pattern"] in GOOD_PATTERNS else 1)
    assert [row["at"] for row in rows] == sorted(row["at"] for row in rows)


def test_the_mix_is_exactly_the_requested_shares(rows):
    n_fraud = round(6_000 * 0.15)
    counts = {pattern: sum(row["pattern"] == pattern for row in rows) for pattern in GOOD_PATTERNS + ATTACK_PATTERNS}
    assert len(rows) == 6_000
    assert sum(row["label"] for row in rows) == n_fraud
    assert counts["hoarding"] == counts["card_testing"] == round(n_fraud * 0.30)
    assert counts["device_burst"] == round(n_fraud * 0.15)
    assert counts["lookup_bruteforce"] == round(n_fraud * 0.05)
    assert counts["stolen_account"] == round(n_fraud * 0.20)
    assert counts["good_promo"] == round(5_100 * 0.06)
    assert counts["good_office"] == round(5_100 * 0.03)
    assert counts["good_bulk"] == round(5_100 * 0.02)
    assert counts["good"] == 5_100 - counts["good_promo"] - counts["good_office"] - counts["good_bulk"]


def test_a_different_mix_changes_the_shares():
    rows = generate(TrafficMix(rows=2_000, fraud_share=0.4, attack_shares={"card_testing": 1.0}), seed=1)
    assert sum(row["label"] for row in rows) == 800
    assert {row["pattern"] for row in rows if row["label"]} == {"card_testing"}


def test_windows_agree_with_each_other(rows):
    for row in rows:
        assert 1 <= row["ip_orders_1m"] <= row["ip_orders_1h"] <= row["ip_orders_1d"]
        assert 1 <= row["email_orders_1h"] <= row["email_orders_1d"]
        assert 1 <= row["device_orders_1h"] <= row["device_orders_1d"]
        assert row["ip_amount_1d"] >= row["amount_minor"]
        assert 0.0 <= row["product_pending_share"] <= 1.0
        assert 0 <= row["hour_of_day"] <= 23
        assert row["email_disposable"] is (row["email_domain"] in {"mailinator.com", "guerrillamail.com", "10minutemail.com", "yopmail.com", "temp-mail.org", "sharklasers.com", "trashmail.com", "maildrop.cc"})  # fmt: skip


def _median(rows, pattern, name):
    return statistics.median(row[name] for row in rows if row["pattern"] == pattern)


def test_each_attack_leaves_its_trace_where_good_buyers_leave_none(rows):
    assert _median(rows, "good", "ip_orders_1h") == 1
    assert _median(rows, "hoarding", "ip_orders_1h") > 5
    assert _median(rows, "hoarding", "product_pending_share") > 10 * _median(rows, "good", "product_pending_share")
    assert _median(rows, "card_testing", "device_failed_payments_1h") >= 3
    assert _median(rows, "good", "device_failed_payments_1h") == 0
    assert _median(rows, "lookup_bruteforce", "lookup_failures_ip_1h") > 20
    assert _median(rows, "good", "lookup_failures_ip_1h") == 0
    assert _median(rows, "stolen_account", "amount_vs_usual") > 2.5
    assert _median(rows, "good", "amount_vs_usual") < 1.3
    assert _median(rows, "device_burst", "device_orders_1h") > 3 or _median(rows, "device_burst", "ip_orders_1h") > 3


def test_attacks_overlap_good_buyers_somewhere(rows):
    """Not trivially separable: some attack rows look like a first-time buyer on every velocity count."""
    quiet = [
        row
        for row in rows
        if row["label"] == 1
        and row["ip_orders_1h"] == row["device_orders_1h"] == row["email_orders_1h"] == 1
        and row["ip_failed_payments_1h"] == row["device_failed_payments_1h"] == row["lookup_failures_ip_1h"] == 0
    ]
    assert 0.02 < len(quiet) / 900 < 0.3
    assert {row["pattern"] for row in quiet} >= {"stolen_account", "hoarding"}
    paid_before_fraud = [row for row in rows if row["label"] == 1 and row["buyer_paid_before"]]
    assert paid_before_fraud  # taken-over accounts


def test_holdout_is_the_latest_traffic(rows):
    train, holdout = holdout_split(rows, 0.2)
    assert len(holdout) == 1_200
    assert len(train) + len(holdout) == len(rows)
    assert max(row["at"] for row in train) <= min(row["at"] for row in holdout)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rows": 10},
        {"fraud_share": 0.0},
        {"fraud_share": 1.0},
        {"attack_shares": {"phishing": 1.0}},
        {"good_shares": {"good_promo": 1.0}},
    ],
)
def test_an_impossible_mix_is_refused(kwargs):
    with pytest.raises(ValueError):
        TrafficMix(**kwargs)
