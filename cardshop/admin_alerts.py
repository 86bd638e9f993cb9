"""Merchants' alerts in the back office: where each merchant is told of sales, refunds and low stock (the bot token
write-only), and the log of alerts sent. Registered from cardshop.admin."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin

from cardshop.models import MerchantAlert, MerchantAlertSettings
from cardshop.services.merchant_alerts import merchant_alert_settings_save
from core.admin_display import ReadOnlyAdminMixin
from core.forms import WriteOnlySecretField

SETTINGS_FIELDS = [
    "merchant",
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


class MerchantAlertSettingsForm(forms.ModelForm):
    telegram_bot_token = WriteOnlySecretField(
        label=_("Telegram bot token"),
        help_text=_("From @BotFather. Write-only: leave empty to keep the stored token."),
    )

    class Meta:
        model = MerchantAlertSettings
        fields = SETTINGS_FIELDS

    def clean_telegram_bot_token(self) -> str:
        typed = self.cleaned_data["telegram_bot_token"]
        if not typed:
            return self.instance.telegram_bot_token if self.instance.pk else ""
        self.instance._meta.get_field("telegram_bot_token").run_validators(typed)
        return typed


@admin.register(MerchantAlertSettings)
class MerchantAlertSettingsAdmin(ModelAdmin):
    form = MerchantAlertSettingsForm
    list_display = ["merchant", "email", "telegram_chat_id", "email_on_sale", "telegram_on_sale", "updated_at"]
    fields = SETTINGS_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return ["merchant"] if obj else []

    def save_model(self, request: HttpRequest, obj: MerchantAlertSettings, form, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in SETTINGS_FIELDS if name in form.cleaned_data}
        fields.pop("merchant", None)
        saved = merchant_alert_settings_save(
            merchant_id=obj.merchant_id, fields=fields, actor=request.user.get_username()
        )
        obj.pk = saved.pk


@admin.register(MerchantAlert)
class MerchantAlertAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["created_at", "merchant", "kind", "channel", "state", "attempts", "last_error", "sent_at"]
    list_filter = ["state", "channel", "kind"]
    list_select_related = ["merchant"]
    fields = ["merchant", "event", "kind", "channel", "state", "attempts", "last_error", "next_attempt_at", "sent_at"]
