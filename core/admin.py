from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin

from core.admin_display import money_label
from core.models import AuditEvent, Merchant


def detail_rows(detail: dict) -> list[tuple[str, str]]:
    """The audit detail as key/value rows; `x_minor` with a `currency` beside it reads as `x: 9.90 CNY`."""
    currency = detail.get("currency") if isinstance(detail.get("currency"), str) else None
    rows = []
    for key, value in detail.items():
        if currency and key.endswith("_minor") and isinstance(value, int):
            rows.append((key.removesuffix("_minor"), money_label(value, currency)))
        elif not (currency and key == "currency"):
            rows.append((key, str(value)))
    return rows


@admin.register(Merchant)
class MerchantAdmin(ModelAdmin):
    list_display = ["name", "slug", "email", "is_active"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(AuditEvent)
class AuditEventAdmin(ModelAdmin):
    """Read-only for everyone: the trail is written by the use cases, never by hand."""

    list_display = ["created_at", "actor", "action", "target"]
    list_filter = ["action"]
    search_fields = ["actor", "target"]
    readonly_fields = ["created_at", "actor", "action", "target", "detail_display"]
    fields = readonly_fields

    @admin.display(description=_("detail"))
    def detail_display(self, obj: AuditEvent) -> str:
        rows = detail_rows(obj.detail or {}) if isinstance(obj.detail, dict) else [("", str(obj.detail))]
        if not rows:
            return "—"
        return format_html("<dl>{}</dl>", format_html_join("", "<dt>{}</dt><dd>{}</dd>", rows))

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


from core import admin_auth, admin_otp  # noqa: E402,F401 - replace the admins of auth and django-otp (registered before ours)
