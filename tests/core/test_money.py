import pytest

from core.money import Money, MoneyError, allocate


def test_decimal_string_round_trip_is_exact():
    assert Money(999, "CNY").to_decimal_str() == "9.99"
    assert Money(5, "CNY").to_decimal_str() == "0.05"
    assert Money(100, "JPY").to_decimal_str() == "100"
    assert Money.from_decimal_str("9.99", "CNY") == Money(999, "CNY")
    assert Money.from_decimal_str("10", "CNY") == Money(1000, "CNY")
    assert Money.from_decimal_str("0.5", "CNY") == Money(50, "CNY")


@pytest.mark.parametrize(
    "text", ["9.999", "-1", "+1", "1e3", "", " 1", "1 ", "9.99\n", "\n9.99", "01.00", "1.", "abc", "1_000", "١٢", "1١"]
)
def test_inexact_or_malformed_amounts_are_refused(text):
    with pytest.raises(MoneyError):
        Money.from_decimal_str(text, "CNY")


def test_jpy_amounts_take_no_decimals():
    assert Money.from_decimal_str("100", "JPY") == Money(100, "JPY")
    with pytest.raises(MoneyError):
        Money.from_decimal_str("100.0", "JPY")


def test_currencies_never_mix_and_floats_are_refused():
    with pytest.raises(MoneyError):
        Money(1, "CNY") + Money(1, "USD")
    with pytest.raises(MoneyError):
        Money(1.5, "CNY")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(1, "XXX")


def test_allocate_largest_remainder_sums_to_total():
    parts = allocate(Money(100, "CNY"), [1, 1, 1])
    assert [p.amount_minor for p in parts] == [34, 33, 33]
    assert sum(p.amount_minor for p in parts) == 100


def test_buyers_read_prices_with_the_currency_symbol():
    assert Money(990, "CNY").display() == "¥9.90"
    assert Money(990, "USD").display() == "US$9.90"
    assert Money(1500, "JPY").display() == "JP¥1500"
    assert Money(-5, "EUR").display() == "-€0.05"
