"""The merchant console's forms: the login (password and, as for staff, a second factor, with the same lockout)
and the console's own small forms. Scopes, modes and event types are the API's."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from cardshop.admin_site import OperatorLoginForm
from cardshop.models import ApiKeyMode, ApiScope, MerchantAlertSettings, MerchantMember
from cardshop.models.webhooks import EVENT_TYPES


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
