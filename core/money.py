"""Money as integer minor units plus an ISO 4217 currency code; never a float.

Provider wire formats (e.g. epay's "9.99") are produced and parsed here only through
`to_decimal_str` / `from_decimal_str`, which are exact string operations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Minor-unit exponent per currency; anything else is refused rather than guessed.
CURRENCY_EXPONENTS: dict[str, int] = {"CNY": 2, "USD": 2, "EUR": 2, "HKD": 2, "JPY": 0}
# How buyers read a price: the symbol, unambiguous where "$" or "¥" alone would not be (CLDR's narrow forms
# for the shop's home currency, the international ones for the rest).
CURRENCY_SYMBOLS: dict[str, str] = {"CNY": "¥", "USD": "US$", "EUR": "€", "HKD": "HK$", "JPY": "JP¥"}

# ASCII digits only, matched whole: no sign, exponent, spaces or trailing newline ("9.99\n" passes a bare `$`).
_DECIMAL_RE = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")


class MoneyError(ValueError):
    pass


_CURRENCY_CODE_RE = re.compile(r"[A-Z]{3}")


def currency_validate(code: object) -> str:
    """The code if it is an ISO 4217 alphabetic code this module supports (CURRENCY_EXPONENTS), else MoneyError.

    Exact: three upper-case ASCII letters, no normalising of "cny" or " CNY", so what was validated is what is
    stored and sent to providers.
    """
    if not isinstance(code, str) or not _CURRENCY_CODE_RE.fullmatch(code):
        raise MoneyError(f"not an ISO 4217 currency code: {code!r}")
    if code not in CURRENCY_EXPONENTS:
        raise MoneyError(f"unsupported currency {code!r}")
    return code


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"unsupported currency {currency!r}") from None


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount_minor, int) or isinstance(self.amount_minor, bool):
            raise MoneyError("amount_minor must be an int")
        exponent(self.currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money) or other.currency != self.currency:
            raise MoneyError("currency mismatch")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __mul__(self, factor: int) -> Money:
        if not isinstance(factor, int) or isinstance(factor, bool):
            raise MoneyError("money can only be multiplied by an int")
        return Money(self.amount_minor * factor, self.currency)

    def to_decimal_str(self) -> str:
        """Exact major-unit string, e.g. Money(999, "CNY") -> "9.99"."""
        exp = exponent(self.currency)
        sign = "-" if self.amount_minor < 0 else ""
        whole, frac = divmod(abs(self.amount_minor), 10**exp)
        return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"

    @classmethod
    def from_decimal_str(cls, text: str, currency: str) -> Money:
        """Parse a non-negative major-unit string exactly; more decimals than the currency has is an error."""
        m = _DECIMAL_RE.fullmatch(text) if isinstance(text, str) else None
        if not m:
            raise MoneyError(f"not an amount: {text!r}")
        exp = exponent(currency)
        frac = m.group(2) or ""
        if len(frac) > exp:
            raise MoneyError(f"too many decimals for {currency}: {text!r}")
        return cls(int(m.group(1)) * 10**exp + int(frac.ljust(exp, "0") or 0), currency)

    def __str__(self) -> str:
        return f"{self.to_decimal_str()} {self.currency}"

    def display(self) -> str:
        """For buyers: the currency's symbol and the amount, e.g. Money(990, "CNY") -> "¥9.90"."""
        sign = "-" if self.amount_minor < 0 else ""
        return f"{sign}{CURRENCY_SYMBOLS.get(self.currency, self.currency + ' ')}{abs(self).to_decimal_str()}"

    def __abs__(self) -> Money:
        return Money(abs(self.amount_minor), self.currency)


def allocate(total: Money, weights: list[int]) -> list[Money]:
    """Split `total` by integer weights with the largest-remainder method; parts always sum to total."""
    if not weights or any(w < 0 for w in weights) or sum(weights) == 0:
        raise MoneyError("weights must be non-negative and not all zero")
    s = sum(weights)
    raw = [total.amount_minor * w for w in weights]
    parts = [r // s for r in raw]
    left = total.amount_minor - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-(raw[i] % s), i))
    for i in order[:left]:
        parts[i] += 1
    return [Money(p, total.currency) for p in parts]
