"""The payouts and reconciliation back office: where each party is paid (with a freeze), when payouts run, every
payout with its postings, and the reconciliation runs with their exceptions. Payouts are made by the beat job and
the provider's answers; operators only retry a failed one (a new payout, a new number) or freeze a party, and
ignore or mark received a reconciliation exception (audited). Registered from settlement.admin."""

from __future__ import annotations

from datetime import timedelta

from celery import current_app
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminSingleDateWidget

from core.admin_display import MajorUnitsFormMixin, ReadOnlyAdminMixin, money_label
from core.audit import audit_record
from core.errors import DomainError
from payments import facade as payments
from settlement.balance_check import DIFFERENCE_REASONS, balance_checks
from settlement.contracts import BalanceCheck
from settlement.models import (
    LedgerTransaction,
    PartyKind,
    Payout,
    PayoutDestination,
    PayoutSchedule,
    ReconException,
    ReconRun,
)
from settlement.payouts import payout_retry
from settlement.reads import party_labels
from settlement.reconciliation import recon_exception_set


class PayoutDestinationForm(forms.ModelForm):
    class Meta:
        model = PayoutDestination
        fields = [
            "party_kind",
            "party_id",
            "currency",
            "channel_account",
            "payee",
            "payee_name",
            "frozen",
            "frozen_reason",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Only accounts whose channel can pay out (Capability.PAYOUT) are offered.
        capable = payments.channel_accounts_with("payout")
        field = self.fields["channel_account"]
        field.queryset = field.queryset.filter(pk__in=capable)
        self.fields["party_kind"].choices = [
            c for c in self.fields["party_kind"].choices if c[0] in ("merchant", "agent")
        ]


@admin.register(PayoutDestination)
class PayoutDestinationAdmin(ModelAdmin):
    form = PayoutDestinationForm
    list_display = ["party_display", "currency", "channel_account", "payee", "frozen"]
    list_filter = ["frozen", "currency", "party_kind"]
    search_fields = ["payee", "=party_id"]
    actions = ["freeze", "unfreeze"]

    @admin.display(description=_("party"))
    def party_display(self, obj: PayoutDestination) -> str:
        return party_labels([(obj.party_kind, obj.party_id)]).get((obj.party_kind, obj.party_id), f"#{obj.party_id}")

    def save_model(self, request, obj: PayoutDestination, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            actor=request.user.get_username(),
            action="payout_destination.edit" if change else "payout_destination.add",
            target=f"payoutdestination:{obj.pk}",
            changed=sorted(form.changed_data),
        )

    def has_freeze_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("settlement.manage_payouts")

    has_unfreeze_permission = has_freeze_permission

    @admin.action(description=_("Freeze: no payouts until unfrozen"), permissions=["freeze"])
    def freeze(self, request: HttpRequest, queryset) -> None:
        self._set_frozen(request, queryset, frozen=True)

    @admin.action(description=_("Unfreeze"), permissions=["unfreeze"])
    def unfreeze(self, request: HttpRequest, queryset) -> None:
        self._set_frozen(request, queryset, frozen=False)

    def _set_frozen(self, request: HttpRequest, queryset, *, frozen: bool) -> None:
        for destination in queryset:
            PayoutDestination.objects.filter(pk=destination.pk).update(frozen=frozen, updated_at=timezone.now())
            audit_record(
                actor=request.user.get_username(),
                action="payout_destination.freeze" if frozen else "payout_destination.unfreeze",
                target=f"payoutdestination:{destination.pk}",
            )
        messages.success(request, _("%(n)d destination(s) updated.") % {"n": queryset.count()})


class PayoutScheduleForm(MajorUnitsFormMixin, forms.ModelForm):
    major_unit_fields = {"minimum_minor": "currency"}
    major_unit_required = ("minimum_minor",)
    major_unit_labels = {"minimum_minor": _("minimum payout")}

    class Meta:
        model = PayoutSchedule
        fields = ["currency", "enabled", "minimum_minor", "window_start", "window_end"]


@admin.register(PayoutSchedule)
class PayoutScheduleAdmin(ModelAdmin):
    form = PayoutScheduleForm
    list_display = ["currency", "enabled", "minimum_display", "window_start", "window_end"]

    @admin.display(description=_("minimum payout"))
    def minimum_display(self, obj: PayoutSchedule) -> str:
        return money_label(obj.minimum_minor, obj.currency)


# What a payout's hold was taken from and went back to, by party kind (settlement.payouts, its sources).
HOLD_LABELS = {
    PartyKind.MERCHANT: (_("held from available"), _("failed: the hold went back to available")),
    PartyKind.AGENT: (
        _("held from the agent's commission payable"),
        _("failed: the hold went back to the agent's commission payable"),
    ),
}


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["payout_no", "party_display", "amount_display", "state", "provider_status", "created_at"]
    list_filter = ["state", "currency", "party_kind"]
    search_fields = ["payout_no", "provider_payout_no", "payee"]
    readonly_fields = [
        "payout_no",
        "party_display",
        "amount_display",
        "state",
        "payee",
        "payee_name",
        "channel_display",
        "provider_payout_no",
        "provider_status",
        "failure_reason",
        "submit_attempts",
        "next_query_at",
        "retry_of",
        "created_at",
        "updated_at",
        "timeline",
    ]
    fields = readonly_fields
    actions = ["retry"]

    @admin.display(description=_("party"))
    def party_display(self, obj: Payout) -> str:
        return party_labels([(obj.party_kind, obj.party_id)]).get((obj.party_kind, obj.party_id), f"#{obj.party_id}")

    @admin.display(description=_("paid through"))
    def channel_display(self, obj: Payout) -> str:
        key = ("channel_account", obj.channel_account_id)
        return party_labels([key]).get(key, f"#{obj.channel_account_id}")

    @admin.display(description=_("amount"), ordering="amount_minor")
    def amount_display(self, obj: Payout) -> str:
        return money_label(obj.amount_minor, obj.currency)

    @admin.display(description=_("timeline"))
    def timeline(self, obj: Payout) -> str:
        """When it was held, and each posting since (the paid or released money), oldest first."""
        held, released = HOLD_LABELS[obj.party_kind]
        labels = {
            f"payout:{obj.payout_no}": held,
            f"payout_paid:{obj.payout_no}": _("paid out: left the provider's balance"),
            f"payout_release:{obj.payout_no}": released,
        }
        rows = [
            (timezone.localtime(t.created_at).strftime("%Y-%m-%d %H:%M:%S"), labels.get(t.idempotency_key, t.memo))
            for t in LedgerTransaction.objects.filter(reference=obj.payout_no).order_by("pk")
        ]
        if obj.submit_attempts:
            rows.append(("", _("sent %(n)d time(s) under %(no)s") % {"n": obj.submit_attempts, "no": obj.payout_no}))
        return format_html("<ol>{}</ol>", format_html_join("", "<li>{} {}</li>", rows)) if rows else "—"

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("settlement.manage_payouts")

    @admin.action(description=_("Retry failed payouts (a new payout, a new number)"), permissions=["retry"])
    def retry(self, request: HttpRequest, queryset) -> None:
        for payout in queryset:
            try:
                again = payout_retry(payout_no=payout.payout_no, actor=request.user.get_username())
            except DomainError as exc:
                messages.error(request, f"{payout.payout_no}: {exc.message}")
            else:
                messages.success(
                    request, _("%(old)s retried as %(new)s") % {"old": payout.payout_no, "new": again.payout_no}
                )


# --- reconciliation -----------------------------------------------------------------------------------------------


class ReconStartForm(forms.Form):
    channel_account = forms.TypedChoiceField(label=_("channel account"), coerce=int)
    day = forms.DateField(label=_("statement day"), widget=UnfoldAdminSingleDateWidget)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ids = payments.channel_accounts_with("statement")
        names = payments.channel_account_names(account_ids=ids)
        self.fields["channel_account"].choices = [(pk, names.get(pk, f"#{pk}")) for pk in ids]
        self.fields["channel_account"].widget = UnfoldAdminSelectWidget(choices=self.fields["channel_account"].choices)
        self.fields["day"].initial = timezone.localdate() - timedelta(days=1)

    def clean_day(self):
        day = self.cleaned_data["day"]
        if day >= timezone.localdate():
            raise forms.ValidationError(_("A day's statement exists once the day is over."))
        return day


@admin.register(ReconRun)
class ReconRunAdmin(ReadOnlyAdminMixin, ModelAdmin):
    change_list_template = "admin/settlement/reconrun_change_list.html"
    list_display = ["day", "channel_display", "state", "progress", "matched", "exception_count", "finished_at"]
    list_filter = ["state", "day"]
    readonly_fields = [
        "channel_display",
        "day",
        "state",
        "progress",
        "matched",
        "exception_count",
        "source_hash",
        "error",
        "started_at",
        "finished_at",
    ]
    fields = readonly_fields

    def get_urls(self):
        start = path("start/", self.admin_site.admin_view(self.start_view), name="settlement_reconrun_start")
        balances = path(
            "balances/", self.admin_site.admin_view(self.balance_check_view), name="settlement_reconrun_balances"
        )
        return [start, balances, *super().get_urls()]

    def balance_check_view(self, request: HttpRequest) -> HttpResponse:
        """Every channel account whose provider reports a balance: the ledger's clearing balance, the provider's
        (asked now, one after the other), the difference, and why the provider could not tell when it could not."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        ids = payments.channel_accounts_with("balance")
        names = payments.channel_account_names(account_ids=ids)
        rows = [
            _balance_row(check, names.get(check.channel_account_id, ""))
            for check in balance_checks(channel_account_ids=ids)
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Balance check"),
            "opts": self.opts,
            "rows": rows,
            "reasons": DIFFERENCE_REASONS,
        }
        return TemplateResponse(request, "admin/settlement/balance_check.html", context)

    def start_view(self, request: HttpRequest) -> HttpResponse:
        """Reconcile one account's day now: the run goes on the worker (settings.SETTLEMENT_RECONCILE_TASK, the
        top layer's task that also recovers lost callbacks), dispatched after this request's commit."""
        if not request.user.has_perm("settlement.manage_payouts"):
            raise PermissionDenied
        form = ReconStartForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            account_id, day = form.cleaned_data["channel_account"], form.cleaned_data["day"]
            task = current_app.tasks[settings.SETTLEMENT_RECONCILE_TASK]
            transaction.on_commit(lambda: task.delay(account_id, day.isoformat()), robust=True)
            audit_record(
                actor=request.user.get_username(),
                action="recon.start",
                target=f"channelaccount:{account_id}",
                day=str(day),
            )
            messages.success(request, _("Reconciliation of %(day)s started.") % {"day": day})
            return HttpResponseRedirect(reverse("admin:settlement_reconrun_changelist") + f"?day={day.isoformat()}")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Reconcile a day"),
            "form": form,
            "opts": self.opts,
        }
        return TemplateResponse(request, "admin/settlement/recon_start.html", context)

    @admin.display(description=_("channel account"))
    def channel_display(self, obj: ReconRun) -> str:
        key = ("channel_account", obj.channel_account_id)
        return party_labels([key]).get(key, f"#{obj.channel_account_id}")

    @admin.display(description=_("progress"))
    def progress(self, obj: ReconRun) -> str:
        """Lines read so far, with a bar while the run goes (the statement's length is known only at its end)."""
        if obj.state != "running":
            return _("%(n)d lines") % {"n": obj.lines_seen}
        return format_html(
            '<progress max="{}" value="{}"></progress> {}',
            max(obj.lines_seen * 2, 1000),
            obj.lines_seen,
            _("%(n)d lines so far") % {"n": obj.lines_seen},
        )


def _balance_row(check: BalanceCheck, name: str) -> dict[str, object]:
    def show(money) -> str:
        return "—" if money is None else money_label(money.amount_minor, money.currency)

    return {
        "account_id": check.channel_account_id,
        "name": name or f"#{check.channel_account_id}",
        "currency": check.currency,
        "ledger": show(check.ledger),
        "available": show(check.provider_available),
        "pending": show(check.provider_pending),
        "provider": show(check.provider),
        "difference": show(check.difference),
        "in_transit": show(check.payouts_in_transit) if check.payouts_in_transit.amount_minor else "",
        "matches": check.matches,
        "as_of": check.as_of,
        "error": f"{check.error_code}: {check.error}" if check.error_code else "",
        "explanation": check.explanation,
    }


@admin.register(ReconException)
class ReconExceptionAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["kind", "line_kind", "our_ref", "provider_ref", "amounts", "status", "run", "created_at"]
    list_filter = ["kind", "status", "line_kind", "run__day"]
    search_fields = ["our_ref", "provider_ref"]
    readonly_fields = [
        "run",
        "kind",
        "line_kind",
        "our_ref",
        "provider_ref",
        "amounts",
        "status",
        "detail",
        "created_at",
    ]
    fields = readonly_fields
    actions = ["ignore", "mark_received"]

    @admin.display(description=_("ours / statement's"))
    def amounts(self, obj: ReconException) -> str:
        def show(minor: int | None) -> str:
            return money_label(minor, obj.currency) if minor is not None and obj.currency else "—"

        return f"{show(obj.expected_minor)} / {show(obj.actual_minor)}"

    def has_ignore_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("settlement.manage_payouts")

    has_mark_received_permission = has_ignore_permission

    @admin.action(description=_("Ignore (kept, audited)"), permissions=["ignore"])
    def ignore(self, request: HttpRequest, queryset) -> None:
        self._set(request, queryset, "ignored", _("ignored by an operator"))

    @admin.action(description=_("Mark received (verified apart, audited)"), permissions=["mark_received"])
    def mark_received(self, request: HttpRequest, queryset) -> None:
        self._set(request, queryset, "resolved", _("marked received by an operator"))

    def _set(self, request: HttpRequest, queryset, status: str, reason: str) -> None:
        for exception in queryset.filter(status="open"):
            recon_exception_set(
                exception_id=exception.pk, status=status, actor=request.user.get_username(), reason=str(reason)
            )
        messages.success(request, _("%(n)d exception(s) updated.") % {"n": queryset.count()})
