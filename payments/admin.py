"""Channel accounts (credentials write-only), payments and the raw notification inbox (read-only)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin

from core.admin_display import MajorUnitsFormMixin, ReadOnlyAdminMixin, money_label
from core.crypto import mask
from core.errors import DomainError
from core.forms import WriteOnlySecretField
from payments.contracts import REFUND_STATUS_LABELS, RefundStatus
from payments.models import (
    ChannelAccount,
    Payment,
    ProviderNotification,
    Refund,
    RoutingRule,
    RoutingSettings,
    TradeSplit,
)
from payments.services import accounts, channel_choice, splits

# The routing thresholds are plain minor units compared with any payment's amount; shown in the shop's currency.
ROUTING_CURRENCY = "CNY"

# What each channel's credentials JSON holds (keys only), shown as help to the operator.
CREDENTIAL_KEYS = {
    "epay": "key",
    "alipay": "app_private_key (PEM), alipay_public_key (PEM)",
    "wechatpay": "mch_private_key (PKCS#8 PEM), mch_serial_no, apiv3_key, platform_public_key (PEM), "
    "platform_public_key_id, appid",
    "stripe": "secret_key, publishable_key, webhook_secret (comma-separated during rotation)",
    "bankgw": "username, password (WS-Security), notify_key (HMAC of the bank's callbacks)",
}


HEALTH_HEADERS = [
    _("account"),
    _("channel"),
    _("enabled"),
    _("success rate"),
    _("samples"),
    _("latency p50 / p95"),
    _("volume today"),
    _("fee"),
    _("breaker"),
    _("operator"),
]


class ChannelAccountForm(MajorUnitsFormMixin, forms.ModelForm):
    major_unit_fields = {
        "fee_fixed_minor": "currency",
        "min_amount_minor": "currency",
        "max_amount_minor": "currency",
        "daily_cap_minor": "currency",
    }
    major_unit_labels = {
        "fee_fixed_minor": _("fixed fee"),
        "min_amount_minor": _("minimum amount"),
        "max_amount_minor": _("maximum amount"),
        "daily_cap_minor": _("daily volume cap"),
    }
    credentials = WriteOnlySecretField(
        label=_("credentials (JSON)"),
    )

    class Meta:
        model = ChannelAccount
        fields = [
            "code",
            "name",
            "merchant_no",
            "base_url",
            "currency",
            "credentials",
            "enabled",
            "priority",
            "fee_rate_bp",
            "fee_fixed_minor",
            "min_amount_minor",
            "max_amount_minor",
            "daily_cap_minor",
            "refund_returns_fee",
            "owner_merchant",
            "split_to",
            "receiver_id",
            "receiver_type",
            "receiver_name",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Built per request: the sentence in the operator's language, the key names as code.
        self.fields["credentials"].help_text = format_html(
            "{} {}",
            _("Write-only JSON object. Leave empty to keep the stored credentials. Keys per channel:"),
            format_html_join("; ", "<code>{}: {}</code>", CREDENTIAL_KEYS.items()),
        )

    def clean_credentials(self) -> str:
        raw = self.cleaned_data["credentials"]
        if not raw:
            if self.instance.pk and ({"base_url", "code"} & set(self.changed_data)):
                # The stored credentials were meant for the old gateway: never send them to a new one unasked.
                raise forms.ValidationError(
                    _("Changing the gateway or channel requires entering the credentials again.")
                )
            return self.instance.credentials if self.instance.pk else ""
        try:
            data = json.loads(raw)
        except ValueError:
            raise forms.ValidationError(_("Credentials must be a JSON object.")) from None
        if not isinstance(data, dict) or not all(isinstance(v, str) and v for v in data.values()):
            raise forms.ValidationError(_("Credentials must be a JSON object of non-empty strings."))
        return json.dumps(data)

    def clean(self):
        cleaned = super().clean()
        if "fee_fixed_minor" in cleaned and cleaned["fee_fixed_minor"] is None:
            cleaned["fee_fixed_minor"] = 0  # an empty fixed fee is no fixed fee (the column is not nullable)
        return cleaned


@admin.register(ChannelAccount)
class ChannelAccountAdmin(ModelAdmin):
    form = ChannelAccountForm
    change_list_template = "admin/payments/channelaccount_change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view(self.health_view)
        return [path("health/", view, name="payments_channel_health")] + super().get_urls()

    # Where credentials go is its own power; accounts are disabled, never deleted (payments point at them).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.edit_channel_account")

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("payments.edit_channel_account")

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        accounts.channel_account_save(account=obj, changed=form.changed_data, actor=request.user.get_username())

    def health_view(self, request: HttpRequest) -> HttpResponse:
        """Live channel quality: success rate, latency, volume, fee and breaker per account, with charts."""
        if request.method == "POST":
            if not request.user.has_perm("payments.control_breaker"):
                raise PermissionDenied
            account = get_object_or_404(ChannelAccount, pk=request.POST.get("account"))
            try:
                channel_choice.breaker_override(
                    account_id=account.pk, action=request.POST.get("action", ""), actor=request.user.get_username()
                )
            except ValueError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, _("%(account)s: breaker set") % {"account": account})
            return redirect("admin:payments_channel_health")
        health = channel_choice.health_dashboard(minutes=60)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Channel health"),
            **health,
            "help": _(
                "Success rate and latency over each account's last %(n)s outcomes and provider calls, shared by every "
                "process. A breaker opens after repeated failures and lets a few probes through once it cools down."
            )
            % {"n": health["window"]},
            "headers": HEALTH_HEADERS,
        }
        return render(request, "admin/payments/channel_health.html", context)

    list_display = [
        "name",
        "code",
        "merchant_no",
        "currency",
        "enabled",
        "priority",
        "fee_rate_bp",
        "fee_fixed_display",
        "limits_display",
        "credentials_masked",
    ]
    list_filter = ["code", "enabled"]

    @admin.display(description=_("fixed fee"))
    def fee_fixed_display(self, obj: ChannelAccount) -> str:
        return money_label(obj.fee_fixed_minor, obj.currency)

    @admin.display(description=_("amount limits / daily cap"))
    def limits_display(self, obj: ChannelAccount) -> str:
        return " / ".join(
            money_label(v, obj.currency) for v in (obj.min_amount_minor, obj.max_amount_minor, obj.daily_cap_minor)
        )

    @admin.display(description=_("credentials"))
    def credentials_masked(self, obj: ChannelAccount) -> str:
        creds = obj.credentials_dict()
        return ", ".join(f"{k}={mask(v)}" for k, v in creds.items()) or _("none: every notify is refused")


# A payment moves only through notifies, queries and the janitor: its page is for reading.
@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = [
        "out_trade_no",
        "reference",
        "channel_code",
        "amount_display",
        "status",
        "provider_trade_no",
        "created_at",
    ]
    list_filter = ["status", "channel_code"]
    search_fields = ["out_trade_no", "reference", "provider_trade_no"]
    readonly_fields = [
        {"amount_minor": "amount_display", "refunded_minor": "refunded_display"}.get(f.name, f.name)
        for f in Payment._meta.fields
        if f.name != "currency"
    ]
    fields = readonly_fields

    @admin.display(description=_("amount"), ordering="amount_minor")
    def amount_display(self, obj: Payment) -> str:
        return money_label(obj.amount_minor, obj.currency)

    @admin.display(description=_("refunded"))
    def refunded_display(self, obj: Payment) -> str:
        return money_label(obj.refunded_minor, obj.currency)


class RefundStatusFilter(admin.SimpleListFilter):
    title = _("refund status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(status.value, REFUND_STATUS_LABELS[status]) for status in RefundStatus]

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Read-only: refunds are started from the order (one action, one service) and settled by the channel."""

    list_display = [
        "refund_no",
        "payment",
        "amount_display",
        "status_display",
        "requested_by",
        "created_at",
        "succeeded_at",
    ]
    list_filter = [RefundStatusFilter, "payment__channel_code"]
    search_fields = ["refund_no", "payment__out_trade_no", "payment__reference", "provider_refund_no"]
    readonly_fields = [
        {"amount_minor": "amount_display", "status": "status_display"}.get(f.name, f.name)
        for f in Refund._meta.fields
        if f.name != "currency"
    ]
    fields = readonly_fields

    @admin.display(description=_("amount"), ordering="amount_minor")
    def amount_display(self, obj: Refund) -> str:
        return money_label(obj.amount_minor, obj.currency)

    @admin.display(description=_("refund status"), ordering="status")
    def status_display(self, obj: Refund) -> str:
        return str(REFUND_STATUS_LABELS.get(obj.status, obj.status))


@admin.register(TradeSplit)
class TradeSplitAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Read-only: a split is asked for by the paid path and settled by the provider; a failed one can be split
    again (a new split, a new number)."""

    list_display = ["split_no", "payment", "receiver", "amount_display", "status", "provider_status", "created_at"]
    list_filter = ["status", "payment__channel_code"]
    search_fields = ["split_no", "payment__out_trade_no", "payment__reference", "provider_split_no"]
    readonly_fields = [
        {"amount_minor": "amount_display"}.get(f.name, f.name) for f in TradeSplit._meta.fields if f.name != "currency"
    ]
    fields = readonly_fields
    actions = ["retry"]

    @admin.display(description=_("platform's share"), ordering="amount_minor")
    def amount_display(self, obj: TradeSplit) -> str:
        return money_label(obj.amount_minor, obj.currency)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.edit_channel_account")

    @admin.action(description=_("Split failed ones again (a new split, a new number)"), permissions=["retry"])
    def retry(self, request: HttpRequest, queryset) -> None:
        for split in queryset:
            try:
                again = splits.split_retry(split_no=split.split_no, actor=request.user.get_username())
            except DomainError as exc:
                messages.error(request, f"{split.split_no}: {exc.message}")
            else:
                messages.success(
                    request, _("%(old)s split again as %(new)s") % {"old": split.split_no, "new": again.split_no}
                )


@admin.register(ProviderNotification)
class ProviderNotificationAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["received_at", "channel_code", "event_key", "payment", "outcome"]
    list_filter = ["channel_code", "outcome"]
    search_fields = ["event_key", "payment__out_trade_no"]
    readonly_fields = ["received_at", "channel_code", "event_key", "payment", "outcome", "params"]


@admin.register(RoutingRule)
class RoutingRuleAdmin(ModelAdmin):
    list_display = ["kind", "account", "merchant", "product_ref", "note"]
    list_filter = ["kind", "account"]
    search_fields = ["product_ref", "note"]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        channel_choice.cache_clear()

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        channel_choice.cache_clear()


class RoutingSettingsForm(MajorUnitsFormMixin, forms.ModelForm):
    # The thresholds compare with any order amount; the shop sells in CNY by default, so they are typed in it.
    major_unit_fields = {"small_below_minor": "=" + ROUTING_CURRENCY, "large_above_minor": "=" + ROUTING_CURRENCY}
    major_unit_labels = {
        "small_below_minor": _("cheapest channel below"),
        "large_above_minor": _("most reliable channel above"),
    }

    class Meta:
        model = RoutingSettings
        fields = [f.name for f in RoutingSettings._meta.fields if f.name != "id"]


@admin.register(RoutingSettings)
class RoutingSettingsAdmin(ModelAdmin):
    """One row of knobs; decisions pick changes up within seconds."""

    form = RoutingSettingsForm
    list_display = ["__str__", "small_below_display", "large_above_display", "max_attempts"]

    @admin.display(description=_("cheapest channel below"))
    def small_below_display(self, obj: RoutingSettings) -> str:
        return money_label(obj.small_below_minor, ROUTING_CURRENCY)

    @admin.display(description=_("most reliable channel above"))
    def large_above_display(self, obj: RoutingSettings) -> str:
        return money_label(obj.large_above_minor, ROUTING_CURRENCY)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        channel_choice.cache_clear()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not RoutingSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
