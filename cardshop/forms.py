"""Input parsing for storefront pages; rules live in services, not here."""

from django import forms
from django.utils.translation import gettext_lazy as _


class CheckoutForm(forms.Form):
    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, max_value=1000, initial=1)
    email = forms.EmailField(label=_("Email"), max_length=254)
    query_password = forms.CharField(
        label=_("Query password"),
        min_length=6,
        max_length=64,
        widget=forms.PasswordInput,
        help_text=_("You need it with your order number or email to find this order again."),
    )


class LookupForm(forms.Form):
    order_no_or_email = forms.CharField(label=_("Order number or email"), max_length=254)
    query_password = forms.CharField(label=_("Query password"), max_length=64, widget=forms.PasswordInput)
