"""Input parsing for storefront pages; rules live in services, not here (the forms show them and say them plainly)."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.utils.translation import gettext as _g
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from cardshop.payment_methods import METHOD_LABELS, method_label
from cardshop.services.checkout import QUERY_PASSWORD_MAX, QUERY_PASSWORD_MIN
from core.money import Money, MoneyError

_QUERY_PASSWORD_ERRORS = {
    "required": _("Choose a query password: you need it to find this order again."),
    "min_length": _("The query password needs at least %(limit_value)d characters; you typed %(show_value)d."),
    "max_length": _("The query password can have at most %(limit_value)d characters; you typed %(show_value)d."),
}


class CheckoutForm(forms.Form):
    # The product's own range is checked in clean_quantity, with a message that names it.
    quantity = forms.IntegerField(label=_("Quantity"), initial=1)
    email = forms.EmailField(
        label=_("Email"),
        max_length=254,
        error_messages={
            "required": _("Enter the email address the codes should be sent to."),
            "invalid": _("This does not look like an email address, e.g. name@example.com."),
        },
    )
    query_password = forms.CharField(
        label=_("Query password"),
        min_length=QUERY_PASSWORD_MIN,
        max_length=QUERY_PASSWORD_MAX,
        # Kept on a failed submit: the buyer just chose it and it guards one order, it is not a login password.
        widget=forms.PasswordInput(render_value=True),
        error_messages=_QUERY_PASSWORD_ERRORS,
    )

    coupon = forms.CharField(
        label=_("Coupon code"),
        required=False,
        max_length=32,
        help_text=_("Optional. Taken off the total when you buy."),
    )

    # Parsed against every known method; which of them this order may use is checked in clean() for its amount.
    # Optional: without one the pay page asks (a single offered method is preselected in the page).
    method = forms.ChoiceField(
        label=_("Payment method"),
        required=False,
        choices=list(METHOD_LABELS.items()),
        error_messages={"invalid_choice": _("Choose one of the payment methods shown.")},
    )

    def __init__(
        self,
        *args,
        product=None,
        methods_for: Callable[[int], list[tuple[str, str]]] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self._product = product
        self._methods_for = methods_for
        self._methods_cache: dict[int, list[tuple[str, str]]] = {}
        # Help texts are formatted here, in the request's language (a lazy string formatted at import is not).
        self.fields["query_password"].help_text = _g(
            "%(min)d to %(max)d characters. You need it with your order number or email to find this order again."
        ) % {"min": QUERY_PASSWORD_MIN, "max": QUERY_PASSWORD_MAX}
        self._range = (product.min_quantity, product.max_quantity) if product is not None else (1, 1000)
        qty = self.fields["quantity"]
        qty.error_messages = {**qty.error_messages, "invalid": self._range_message(), "required": self._range_message()}
        qty.help_text = _g("%(min)d to %(max)d per order.") % {"min": self._range[0], "max": self._range[1]}

    def _range_message(self) -> str:
        # The service's own words for the same rule (cardshop.services.checkout._validate).
        return _g("Quantity must be between %(min)d and %(max)d.") % {"min": self._range[0], "max": self._range[1]}

    def clean_quantity(self) -> int:
        value = self.cleaned_data["quantity"]
        if not (self._range[0] <= value <= self._range[1]):
            raise forms.ValidationError(self._range_message(), code="quantity_range")
        return value

    def methods_for_quantity(self, quantity: int) -> list[tuple[str, str]]:
        if self._methods_for is None:
            return []
        if quantity not in self._methods_cache:
            self._methods_cache[quantity] = self._methods_for(quantity)
        return self._methods_cache[quantity]

    def shown_quantity(self) -> int:
        """The quantity the page shows: the buyer's, if it is one the product allows, else the minimum."""
        try:
            value = int(self["quantity"].value())
        except (TypeError, ValueError):
            value = self._range[0]
        return value if self._range[0] <= value <= self._range[1] else self._range[0]

    def method_options(self) -> list[tuple[str, str]]:
        """The methods offered as radio buttons: what routing would take for the quantity shown."""
        return self.methods_for_quantity(self.shown_quantity())

    def method_checked(self) -> str:
        """The method checked in the page: the buyer's choice, else the only one offered."""
        options = self.method_options()
        chosen = self["method"].value() or ""
        if chosen in dict(options):
            return chosen
        return options[0][0] if len(options) == 1 else ""

    def clean(self) -> dict:
        data = super().clean()
        method, quantity = data.get("method"), data.get("quantity")
        if method and quantity is not None and method not in dict(self.methods_for_quantity(quantity)):
            try:
                amount = Money(self._product.price_minor * quantity, self._product.currency).display()
            except (AttributeError, MoneyError):
                amount = ""
            self.add_error(
                "method",
                forms.ValidationError(
                    _g("%(method)s cannot take an order of %(amount)s right now; choose another payment method.")
                    % {"method": method_label(method), "amount": amount},
                    code="method_unavailable",
                ),
            )
        return data

    def show_stock(self, stock: int | None) -> None:
        """Name the stock next to the quantity (None: not counted, e.g. a reusable code)."""
        if stock is not None:
            self.fields["quantity"].help_text = ngettext(
                "%(min)d to %(max)d per order; %(stock)d in stock.",
                "%(min)d to %(max)d per order; %(stock)d in stock.",
                stock,
            ) % {"min": self._range[0], "max": self._range[1], "stock": stock}


class LookupForm(forms.Form):
    order_no_or_email = forms.CharField(
        label=_("Order number or email"),
        max_length=254,
    )
    query_password = forms.CharField(
        label=_("Query password"),
        max_length=QUERY_PASSWORD_MAX,
        widget=forms.PasswordInput(render_value=True),  # kept after a wrong guess, as on the checkout form
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["query_password"].help_text = _g(
            "The password you chose at checkout (%(min)d to %(max)d characters)."
        ) % {"min": QUERY_PASSWORD_MIN, "max": QUERY_PASSWORD_MAX}
