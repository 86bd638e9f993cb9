from django import forms
from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.widgets import UnfoldAdminSelectWidget

from core.admin_display import ReadOnlyAdminMixin, money_label
from core.models import Agent, AuditEvent, Merchant


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


class MerchantForm(forms.ModelForm):
    """`Merchant.agent` is not editable on the model (a split reads it): the admin sets it through `agent_choice`."""

    agent_choice = forms.ModelChoiceField(
        label=_("agent"),
        queryset=Agent.objects.order_by("name"),
        required=False,
        widget=UnfoldAdminSelectWidget,
        help_text=_("The agent this merchant signed up under: its chain earns commissions on the sales."),
    )

    class Meta:
        model = Merchant
        fields = ["name", "slug", "email", "is_active"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["agent_choice"].initial = self.instance.agent_id

    def save(self, commit: bool = True) -> Merchant:
        self.instance.agent = self.cleaned_data.get("agent_choice")
        return super().save(commit=commit)


@admin.register(Merchant)
class MerchantAdmin(ModelAdmin):
    form = MerchantForm
    list_display = ["name", "slug", "email", "agent", "is_active"]
    list_select_related = ["agent"]
    prepopulated_fields = {"slug": ["name"]}
    fields = ["name", "slug", "email", "agent_choice", "is_active"]


@admin.register(Agent)
class AgentAdmin(ModelAdmin):
    """The agent tree: depth follows the parent (checked against SETTLEMENT_AGENT_MAX_DEPTH in Agent.clean)."""

    list_display = ["name", "parent", "depth", "merchant_count", "is_active", "created_at"]
    list_filter = ["depth", "is_active"]
    list_select_related = ["parent"]
    search_fields = ["name"]
    fields = ["name", "parent", "depth", "is_active", "created_at"]
    readonly_fields = ["depth", "created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(merchants_n=Count("merchants"))

    @admin.display(description=_("merchants"), ordering="merchants_n")
    def merchant_count(self, obj: Agent) -> int:
        return obj.merchants_n

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # an agent's commissions stay booked under its id


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, ModelAdmin):
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


from core import admin_auth, admin_otp  # noqa: E402,F401 - replace the admins of auth and django-otp (registered before ours)
