"""Merchants' alerts in the back office: where each merchant is told of sales, refunds and low stock (the bot token
write-only), and the log of alerts sent. Registered from cardshop.admin."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from unfold.admin import ModelAdmin
from unfold.widgets import UnfoldAdminPasswordWidget

from cardshop.console_forms import AlertSettingsForm
from cardshop.models import MerchantAlert, MerchantAlertSettings
from cardshop.services.merchant_alerts import merchant_alert_settings_save
from core.admin_display import ReadOnlyAdminMixin

SETTINGS_FIELDS = ["merchant", *AlertSettingsForm.Meta.fields]


class MerchantAlertSettingsForm(AlertSettingsForm):
    """The console's form (the token write-only, checked there) plus the merchant, in the admin's widgets."""

    class Meta(AlertSettingsForm.Meta):
        fields = SETTINGS_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["telegram_bot_token"].widget = UnfoldAdminPasswordWidget(render_value=False)


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
