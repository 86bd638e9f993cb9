"""Merchants' webhooks in the back office: endpoints (the secret never shown), events, and each delivery with its
log of attempts and a replay action. Registered from cardshop.admin."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline

from cardshop.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from cardshop.services.webhooks import webhook_delivery_replay
from core.admin_display import ReadOnlyAdminMixin
from core.errors import DomainError


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["url", "merchant", "event_types", "is_active", "failing_since", "disabled_reason", "created_at"]
    list_filter = ["is_active", "merchant"]
    fields = ["merchant", "url", "description", "event_types", "is_active", "failing_since", "disabled_reason"]


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["event_id", "type", "merchant", "created_at"]
    list_filter = ["type", "merchant"]
    search_fields = ["event_id"]
    fields = ["event_id", "type", "merchant", "payload", "created_at"]


class AttemptInline(TabularInline):
    model = WebhookAttempt
    fields = ["created_at", "status_code", "error", "duration_ms"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["event", "endpoint", "state", "attempts", "last_status_code", "next_attempt_at", "created_at"]
    list_filter = ["state"]
    search_fields = ["event__event_id"]
    list_select_related = ["event", "endpoint"]
    fields = ["event", "endpoint", "state", "attempts", "last_status_code", "last_error", "next_attempt_at"]
    inlines = [AttemptInline]
    actions = ["replay"]

    @admin.action(description=_("Send again now"))
    def replay(self, request: HttpRequest, queryset) -> None:
        sent = 0
        for delivery in queryset:
            try:
                webhook_delivery_replay(delivery_id=delivery.pk, actor=request.user.get_username())
                sent += 1
            except DomainError as exc:
                self.message_user(request, f"{delivery}: {exc.message}", messages.ERROR)
        if sent:
            self.message_user(request, _("%(n)d delivery(ies) sent again.") % {"n": sent}, messages.SUCCESS)
