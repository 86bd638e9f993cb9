"""The merchant console's forms: the login (password and, as for staff, a second factor, with the same lockout)
and the console's own small forms. Scopes, modes and event types are the API's."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from cardshop.admin_site import OperatorLoginForm
from cardshop.models import ApiKeyMode, ApiScope, CouponKind, MerchantAlertSettings, MerchantMember, Product
from cardshop.models.webhooks import EVENT_TYPES
from core.money import CURRENCY_EXPONENTS, Money, MoneyError


class MerchantLoginForm(OperatorLoginForm):
    """The operators' login, for a merchant's users: allowed for a console user of an active merchant, not staff."""

    error_messages = {
        **OperatorLoginForm.error_messages,
        "not_member": _("This account has no merchant console. Ask the shop's operators for one."),
    }

    def confirm_login_allowed(self, user) -> None:
        AuthenticationForm.confirm_login_allowed(self, user)  # active; not the admin's "is staff"
        if not MerchantMember.objects.filter(user=user, merchant__is_active=True).exists():
            raise forms.ValidationError(self.error_messages["not_member"], code="not_member")


class ApiKeyForm(forms.Form):
    name = forms.CharField(label=_("name"), max_length=80)
    mode = forms.ChoiceField(label=_("mode"), choices=ApiKeyMode.choices, initial=ApiKeyMode.LIVE)
    scopes = forms.MultipleChoiceField(
        label=_("scopes"),
        choices=ApiScope.choices,
        initial=[ApiScope.READ, ApiScope.WRITE],
        widget=forms.CheckboxSelectMultiple,
    )


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(label=_("URL"), max_length=500)
    description = forms.CharField(label=_("description"), max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        label=_("event types"),
        choices=[(t, t) for t in EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every type."),
    )


class AlertSettingsForm(forms.ModelForm):
    telegram_bot_token = forms.CharField(
        label=_("Telegram bot token"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("From @BotFather. Write-only: leave empty to keep the stored token."),
    )

    class Meta:
        model = MerchantAlertSettings
        fields = [
            "email",
            "email_on_sale",
            "email_on_refund",
            "email_on_low_stock",
            "telegram_bot_token",
            "telegram_chat_id",
            "telegram_on_sale",
            "telegram_on_refund",
            "telegram_on_low_stock",
        ]

    def clean_telegram_bot_token(self) -> str:
        typed = self.cleaned_data["telegram_bot_token"]
        if not typed:
            return self.instance.telegram_bot_token if self.instance.pk else ""
        self.instance._meta.get_field("telegram_bot_token").run_validators(typed)
        return typed


class CouponForm(forms.Form):
    """A coupon as the merchant types it: the amount off in major units ("5.00") of the currency chosen."""

    code = forms.RegexField(label=_("code"), regex=r"^[A-Za-z0-9_-]{3,32}$", max_length=32)
    kind = forms.ChoiceField(label=_("kind"), choices=CouponKind.choices)
    percent_off = forms.IntegerField(label=_("percent off"), min_value=1, max_value=99, required=False)
    amount_off = forms.CharField(label=_("amount off"), required=False, help_text=_("In major units, e.g. 5.00."))
    currency = forms.ChoiceField(
        label=_("currency"), choices=[(c, c) for c in sorted(CURRENCY_EXPONENTS)], initial="CNY"
    )
    product = forms.ModelChoiceField(label=_("product"), queryset=Product.objects.none(), required=False)
    max_uses = forms.IntegerField(label=_("uses allowed"), min_value=1, required=False)
    per_buyer_limit = forms.IntegerField(label=_("uses per buyer"), min_value=1, required=False)
    valid_until = forms.DateTimeField(label=_("valid until"), required=False, help_text=_("e.g. 2026-12-31 23:59"))

    def __init__(self, *args, merchant_id: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["product"].queryset = Product.objects.filter(merchant_id=merchant_id).order_by("name")
        self.fields["product"].empty_label = _("every product")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") == CouponKind.FIXED:
            try:
                cleaned["amount_off_minor"] = Money.from_decimal_str(
                    cleaned.get("amount_off") or "", cleaned.get("currency") or ""
                ).amount_minor
            except MoneyError:
                self.add_error("amount_off", _("Give the amount off, e.g. 5.00."))
        return cleaned

    def service_fields(self) -> dict:
        c = self.cleaned_data
        fixed = c["kind"] == CouponKind.FIXED
        return {
            "code": c["code"].upper(),
            "kind": c["kind"],
            "percent_off": None if fixed else c.get("percent_off"),
            "amount_off_minor": c.get("amount_off_minor") if fixed else None,
            "currency": c.get("currency", "") if fixed else "",
            "product_id": c["product"].pk if c.get("product") else None,
            "max_uses": c.get("max_uses"),
            "per_buyer_limit": c.get("per_buyer_limit"),
            "valid_until": c.get("valid_until"),
        }
