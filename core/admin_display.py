"""Admin helpers shared by every app: money shown and typed in major units, stored as integer minor units."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _
from unfold.widgets import UnfoldAdminTextInputWidget

from core.money import Money, MoneyError


def money_label(amount_minor: int | None, currency: str) -> str:
    """ "9.90 CNY" for 990 CNY; "—" for no amount. A currency the money module refuses shows its raw row
    (legacy data must still render, and an unlabelled integer is never passed off as major units)."""
    if amount_minor is None:
        return "—"
    try:
        return str(Money(int(amount_minor), currency))
    except MoneyError:
        return f"{amount_minor} ({currency}, {_('minor units')})"


def major_str(amount_minor: int, currency: str) -> str:
    """ "9.90" for 990 CNY (exports); the raw integer for a currency the money module refuses."""
    try:
        return Money(int(amount_minor), currency).to_decimal_str()
    except MoneyError:
        return str(amount_minor)


class _MajorUnitsField(forms.CharField):
    def has_changed(self, initial: Any, data: Any) -> bool:
        # "0" typed over a shown "0.00" is no change (audits list changed fields).
        before, after = ("" if initial is None else str(initial)).strip(), ("" if data is None else str(data)).strip()
        if not before or not after:
            return before != after
        try:
            return Decimal(before) != Decimal(after)
        except InvalidOperation:
            return True


class MajorUnitsFormMixin:
    """A ModelForm mixin: each `major_unit_fields` entry `{field: currency}` is typed as "12.50" and stored as
    1250. `currency` is a field name of the same form (the row's currency) or, prefixed with "=", a fixed code.

    Parsing goes through Money.from_decimal_str, so "12.505" for CNY or "1e3" is a form error, never rounded.
    """

    major_unit_fields: dict[str, str] = {}
    major_unit_required: tuple[str, ...] = ()
    major_unit_labels: dict[str, Any] = {}  # the models' labels say "(minor units)": these replace them

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, currency_source in self.major_unit_fields.items():
            if name not in self.fields:
                continue
            old = self.fields[name]
            currency = self._major_currency_initial(currency_source)
            label = self.major_unit_labels.get(name, old.label)
            self.fields[name] = _MajorUnitsField(
                label=label,
                required=name in self.major_unit_required,
                help_text=_("In major units, e.g. 9.90."),
                widget=UnfoldAdminTextInputWidget(attrs={"inputmode": "decimal", "size": 12}),
            )
            minor = self.initial.get(name)
            if isinstance(minor, int) and currency:
                try:
                    self.initial[name] = Money(minor, currency).to_decimal_str()
                except MoneyError:
                    pass

    def _major_currency_initial(self, source: str) -> str:
        if source.startswith("="):
            return source[1:]
        return self.initial.get(source) or getattr(self.instance, source, "") or ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for name, source in self.major_unit_fields.items():
            if name not in self.fields:
                continue
            text = (cleaned.get(name) or "").strip()
            if not text:
                cleaned[name] = None
                continue
            currency = source[1:] if source.startswith("=") else cleaned.get(source)
            if not currency:
                continue  # the currency field carries its own error
            try:
                cleaned[name] = Money.from_decimal_str(text, currency).amount_minor
            except MoneyError:
                self.add_error(
                    name,
                    _("Enter an amount in %(currency)s like 9.90 (at most the currency's decimals).")
                    % {"currency": currency},
                )
        return cleaned


class ReadOnlyAdminMixin:
    """An admin (or inline) for reading only: its rows change through their services or never (ledger lines,
    audit events, provider notifications), so the admin offers no add, change or delete, and a forged POST
    gets 403. Put it before the ModelAdmin base."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
