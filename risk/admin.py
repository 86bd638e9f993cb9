"""The risk back office: rule set versions with their rules (the draft editable, published ones read-only), the
block and allow lists, the settings, and every assessment with what it saw."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline

from core.admin_display import ReadOnlyAdminMixin, money_label
from core.errors import DomainError
from risk.backtest import draft_backtest, rules_digest
from risk.models import Assessment, ListEntry, RiskSettings, Rule, RuleSetVersion, VersionState
from risk.schema import FEATURES
from risk.selectors import feature_rows
from risk.services import risk_caches_clear
from risk.versions import ruleset_draft, ruleset_publish


class RuleInline(TabularInline):
    model = Rule
    extra = 0
    fields = ["priority", "name", "expression", "action", "reason_code", "enabled"]

    def _editable(self, obj) -> bool:
        return obj is not None and obj.state == VersionState.DRAFT

    def has_add_permission(self, request, obj=None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)


@admin.register(RuleSetVersion)
class RuleSetVersionAdmin(ModelAdmin):
    inlines = [RuleInline]
    list_display = ["number", "state", "note", "rule_count", "created_by", "published_by", "published_at"]
    list_filter = ["state"]
    readonly_fields = [
        "number",
        "state",
        "created_by",
        "created_at",
        "published_by",
        "published_at",
        "backtest_display",
        "feature_help",
    ]
    fields = [
        "number",
        "state",
        "note",
        "created_by",
        "created_at",
        "published_by",
        "published_at",
        "backtest_display",
        "feature_help",
    ]
    actions = ["draft", "backtest", "publish"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a draft is made by the action (a copy of the live rules)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("risk.publish_ruleset")

    def has_draft_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("risk.change_rule")

    @admin.display(description=_("rules"))
    def rule_count(self, obj: RuleSetVersion) -> int:
        return obj.rules.count()

    @admin.display(description=_("features a rule may use"))
    def feature_help(self, obj: RuleSetVersion | None = None) -> str:
        rows = [(f.name, f.kind.__name__, f.doc) for f in FEATURES]
        return format_html("<ul>{}</ul>", format_html_join("", "<li><code>{}</code> ({}): {}</li>", rows))

    @admin.action(description=_("Make a draft (a copy of the live rules)"), permissions=["draft"])
    def draft(self, request: HttpRequest, queryset) -> None:
        version = ruleset_draft(actor=request.user.get_username())
        messages.success(request, _("Draft v%(n)d is ready to edit.") % {"n": version.number})

    @admin.display(description=_("backtest"))
    def backtest_display(self, obj: RuleSetVersion) -> str:
        """What the draft would have done to the last orders, by what really became of them."""
        result = obj.backtest or {}
        if not result:
            return str(_("Not backtested yet: run “Backtest the draft” before publishing."))
        stale = obj.state == VersionState.DRAFT and result.get("rules_digest") != rules_digest(obj)
        labels = {
            "paid": _("paid"),
            "refunded": _("refunded"),
            "expired": _("expired or cancelled"),
            "blocked": _("blocked"),
            "open": _("still open"),
        }
        rows = [
            (
                labels[outcome],
                bucket["orders"],
                bucket["hit"],
                ", ".join(money_label(v, c) for c, v in sorted(bucket["hit_amount"].items())) or "—",
            )
            for outcome, bucket in result["by_outcome"].items()
        ]
        head = _("Over the last %(n)d orders it would have stopped %(hit)d (challenge, review or block).") % {
            "n": result["orders"],
            "hit": result["hit"],
        }
        table = format_html(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
            _("what became of them"),
            _("orders"),
            _("stopped"),
            _("amount stopped"),
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )
        note = format_html("<p><strong>{}</strong></p>", _("The rules changed since: backtest again.")) if stale else ""
        return format_html("<p>{}</p>{}{}", head, table, note)

    def has_backtest_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("risk.change_rule")

    @admin.action(description=_("Backtest the draft over the last 1,000 orders"), permissions=["backtest"])
    def backtest(self, request: HttpRequest, queryset) -> None:
        for version in queryset.filter(state=VersionState.DRAFT):
            result = draft_backtest(number=version.number)
            messages.success(
                request,
                _("v%(n)d: %(hit)d of %(orders)d orders would have been stopped.")
                % {"n": version.number, "hit": result["hit"], "orders": result["orders"]},
            )

    @admin.action(description=_("Publish the draft"), permissions=["publish"])
    def publish(self, request: HttpRequest, queryset) -> None:
        for version in queryset.filter(state=VersionState.DRAFT):
            try:
                ruleset_publish(number=version.number, actor=request.user.get_username())
            except DomainError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, _("v%(n)d is live.") % {"n": version.number})


@admin.register(ListEntry)
class ListEntryAdmin(ModelAdmin):
    list_display = ["kind", "field", "value", "note", "created_by", "created_at"]
    list_filter = ["kind", "field"]
    search_fields = ["value", "note"]
    fields = ["kind", "field", "value", "note"]

    def save_model(self, request, obj: ListEntry, form, change: bool) -> None:
        obj.value = obj.value.strip().lower() if obj.field in ("email", "domain") else obj.value.strip()
        obj.created_by = obj.created_by or request.user.get_username()
        super().save_model(request, obj, form, change)
        risk_caches_clear()

    def delete_model(self, request, obj: ListEntry) -> None:
        super().delete_model(request, obj)
        risk_caches_clear()

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        risk_caches_clear()


@admin.register(RiskSettings)
class RiskSettingsAdmin(ModelAdmin):
    list_display = ["__str__", "degraded_allow_below_minor", "score_review", "score_block", "hoarding_share"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not RiskSettings.objects.exists()

    def save_model(self, request, obj: RiskSettings, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        risk_caches_clear()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Assessment)
class AssessmentAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["created_at", "stage", "order_no", "decision", "reasons", "score", "ruleset_version", "degraded"]
    list_filter = ["decision", "stage", "degraded"]
    search_fields = ["order_no"]
    readonly_fields = [f.name if f.name != "features" else "features_display" for f in Assessment._meta.fields]
    fields = readonly_fields

    @admin.display(description=_("features"))
    def features_display(self, obj: Assessment) -> str:
        """Every feature the decision saw, amounts in major units with their currency."""
        rows = feature_rows(obj.features, obj.currency)
        return format_html("<ul>{}</ul>", format_html_join("", "<li><code>{}</code>: {}</li>", rows))
