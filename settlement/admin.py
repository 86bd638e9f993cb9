"""The settlement back office: fee plans, accounts with balances, the append-only ledger, the invariant check
runs, party balances and statements (merchant, agent commission) with a CSV export.

Money is shown in major units with its currency (core.admin_display.money_label) and on each account's normal
side: what the platform owes a merchant reads positive. Nothing here edits the ledger: postings come from the
use cases, corrections are adjustment postings.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminSingleDateWidget

from core.admin_display import MajorUnitsFormMixin, ReadOnlyAdminMixin, major_str, money_label
from core.errors import DomainError
from core.models import Agent, Merchant
from settlement.checks import LedgerCheckRun, ledger_check_last
from settlement.models import (
    BALANCE_ROW_KINDS,
    AccountKind,
    FeePlan,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PartyKind,
)
from settlement.reads import account_kind_label, party_labels
from settlement.services.plans import fee_plan_set


def normal_side(kind: str, raw: int) -> int:
    """A raw (debit +) amount on the account's normal side: credits to a credit-normal account read positive."""
    return -raw if AccountKind(kind).credit_normal else raw


def party_label(party_kind: str, party_id: int, *, merchant: str | None, agent: str | None) -> str:
    """ "merchant Demo Shop" from names the query already read (see settlement.reads.party_labels)."""
    kind_label = PartyKind(party_kind).label if party_kind in PartyKind.values else party_kind
    if party_kind == PartyKind.PLATFORM:
        return str(kind_label)
    name = merchant if party_kind == PartyKind.MERCHANT else agent if party_kind == PartyKind.AGENT else None
    return f"{kind_label} {name or f'#{party_id}'}"


def check_summary(run: LedgerCheckRun | None) -> dict:
    """What the pages show of the last invariant check run."""
    if run is None:
        return {"run": None, "message": _("The ledger check has not run yet.")}
    message = _("Last ledger check %(when)s: %(n)d problem(s), %(s)d suspense past its time.") % {
        "when": timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M"),
        "n": run.problem_count,
        "s": run.stale_suspense_count,
    }
    years = [str(n["year"]) for n in run.notices or () if n.get("code") == "calendar_uncovered"]
    if years:
        message += " " + _("The holiday file does not declare %(years)s: add them before releases fall due.") % {
            "years": ", ".join(years)
        }
    return {"run": run, "message": message, "url": reverse("admin:settlement_ledgercheckrun_change", args=[run.pk])}


# --- fee plans -------------------------------------------------------------------------------------------------


class FeePlanForm(MajorUnitsFormMixin, forms.ModelForm):
    major_unit_fields = {"platform_fixed_minor": "currency"}
    major_unit_labels = {"platform_fixed_minor": _("platform fixed fee per order")}

    class Meta:
        model = FeePlan
        fields = [
            "merchant",
            "currency",
            "platform_rate_bp",
            "platform_fixed_minor",
            "cycle",
            "n_days",
            "reserve_bp",
            "reserve_days",
            "agent_commission_bp",
            "refund_fee_borne_by",
            "split_at_provider",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A new plan replaces the active one when saved (fee_plan_set): it is not active while it is checked.
        self.instance.is_active = False

    def clean(self):
        cleaned = super().clean()
        if "platform_fixed_minor" in cleaned and cleaned["platform_fixed_minor"] is None:
            cleaned["platform_fixed_minor"] = 0
        return cleaned


@admin.register(FeePlan)
class FeePlanAdmin(ModelAdmin):
    """A plan is history once it has priced a sale: a new plan replaces the active one (add), none is edited."""

    form = FeePlanForm
    list_display = [
        "merchant",
        "currency",
        "platform_rate_bp",
        "fixed_display",
        "cycle",
        "reserve_display",
        "agent_commission_bp",
        "split_at_provider",
        "is_active",
        "created_at",
    ]
    list_filter = ["is_active", "currency", "cycle", "split_at_provider"]
    list_select_related = ["merchant"]
    search_fields = ["merchant__name"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["merchant", "currency", "platform_rate_bp", "fixed_display", "cycle", "n_days", "reserve_bp"] + [
            "reserve_days",
            "agent_commission_bp",
            "refund_fee_borne_by",
            "split_at_provider",
            "is_active",
            "created_at",
        ]

    def get_fields(self, request, obj=None):
        if obj is None:
            return super().get_fields(request, obj)
        return self.get_readonly_fields(request, obj)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description=_("platform fixed fee per order"), ordering="platform_fixed_minor")
    def fixed_display(self, obj: FeePlan) -> str:
        return money_label(obj.platform_fixed_minor, obj.currency)

    @admin.display(description=_("rolling reserve"))
    def reserve_display(self, obj: FeePlan) -> str:
        if not obj.reserve_bp:
            return "—"
        return _("%(bp)d bp for %(days)d days") % {"bp": obj.reserve_bp, "days": obj.reserve_days}

    def save_model(self, request, obj: FeePlan, form, change: bool) -> None:
        try:
            plan = fee_plan_set(
                merchant_id=obj.merchant_id,
                currency=obj.currency,
                platform_rate_bp=obj.platform_rate_bp,
                platform_fixed_minor=obj.platform_fixed_minor,
                cycle=obj.cycle,
                n_days=obj.n_days,
                reserve_bp=obj.reserve_bp,
                reserve_days=obj.reserve_days,
                agent_commission_bp=obj.agent_commission_bp,
                refund_fee_borne_by=obj.refund_fee_borne_by,
                split_at_provider=obj.split_at_provider,
            )
        except DomainError as exc:  # the form ran the same checks: only a race with another save lands here
            messages.error(request, exc.message)
            raise
        obj.pk = plan.pk
        obj.is_active = True


# --- accounts and balances -------------------------------------------------------------------------------------


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Accounts with their balance, read in the list's own query (no query per row). Accounts are made by
    postings and never edited."""

    list_display = ["party_display", "kind", "currency", "balance_display", "no_overdraft", "entry_count"]
    list_filter = ["party_kind", "kind", "currency"]
    search_fields = ["=party_id"]
    readonly_fields = [
        "party_kind",
        "party_id",
        "party_display",
        "kind",
        "currency",
        "no_overdraft",
        "balance_display",
        "entry_count",
        "created_at",
    ]
    fields = readonly_fields
    change_list_template = "admin/settlement/ledgeraccount/change_list.html"

    def get_queryset(self, request):
        # The balance and the party's name come with each row: one query per page, none per row.
        return (
            super()
            .get_queryset(request)
            .annotate(
                raw_sum=Coalesce(Sum("entries__amount_minor"), 0),
                entries_n=Count("entries"),
                merchant_name=Subquery(Merchant.objects.filter(pk=OuterRef("party_id")).values("name")[:1]),
                agent_name=Subquery(Agent.objects.filter(pk=OuterRef("party_id")).values("name")[:1]),
            )
        )

    @admin.display(description=_("party"), ordering="party_kind")
    def party_display(self, obj: LedgerAccount) -> str:
        return party_label(obj.party_kind, obj.party_id, merchant=obj.merchant_name, agent=obj.agent_name)

    @admin.display(description=_("balance"))
    def balance_display(self, obj: LedgerAccount) -> str:
        if obj.kind in BALANCE_ROW_KINDS:
            amount = obj.balance_minor
        else:
            amount = normal_side(obj.kind, obj.raw_sum)
        label = money_label(amount, obj.currency)
        if obj.kind == AccountKind.MERCHANT_AVAILABLE and amount is not None and amount < 0:
            return format_html("{} <strong>{}</strong>", label, _("owed by the merchant"))
        return label

    @admin.display(description=_("entries"))
    def entry_count(self, obj: LedgerAccount) -> int:
        return obj.entries_n

    def changelist_view(self, request, extra_context=None):
        extra = {"ledger_check": check_summary(ledger_check_last()), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("balances/", view(self.balances_view), name="settlement_party_balances"),
            path("statement/", view(self.statement_view), name="settlement_statement"),
        ] + super().get_urls()

    def balances_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        rows = party_balances()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Party balances"),
            "opts": self.model._meta,
            "rows": rows,
            "ledger_check": check_summary(ledger_check_last()),
        }
        return TemplateResponse(request, "admin/settlement/party_balances.html", context)

    def statement_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        kind = request.GET.get("party_kind") or PartyKind.MERCHANT
        if kind not in (PartyKind.MERCHANT, PartyKind.AGENT):
            kind = PartyKind.MERCHANT
        form = StatementForm(request.GET if "party" in request.GET else None, party_kind=kind)
        statement = None
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            statement = party_statement(
                party_kind=kind,
                party_id=data["party"].pk,
                currency=data["currency"],
                date_from=data["date_from"],
                date_to=data["date_to"],
            )
            if request.GET.get("format") == "csv":
                return statement_csv(statement, party_name=data["party"].name)
        title = _("Merchant statement") if kind == PartyKind.MERCHANT else _("Agent commission statement")
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "form": form,
            "party_kind": kind,
            "statement": statement,
            "csv_query": request.GET.urlencode() + "&format=csv" if statement else "",
        }
        return TemplateResponse(request, "admin/settlement/statement.html", context)


@dataclass
class PartyBalance:
    party_kind: str
    party_id: int
    currency: str
    label: str = ""
    by_kind: dict[str, int] = field(default_factory=dict)

    def shown(self, kind: str) -> str:
        return money_label(self.by_kind[kind], self.currency) if kind in self.by_kind else "—"

    @property
    def pending(self) -> str:
        return self.shown(AccountKind.MERCHANT_PENDING)

    @property
    def available(self) -> str:
        available = self.by_kind.get(AccountKind.MERCHANT_AVAILABLE)
        return money_label(max(available, 0), self.currency) if available is not None else "—"

    @property
    def owed(self) -> str:
        """A refund after release can take available below zero: the merchant owes it, netted on next sales."""
        available = self.by_kind.get(AccountKind.MERCHANT_AVAILABLE)
        return money_label(-available, self.currency) if available is not None and available < 0 else "—"

    @property
    def reserve(self) -> str:
        return self.shown(AccountKind.MERCHANT_RESERVE)

    @property
    def commission(self) -> str:
        return self.shown(AccountKind.AGENT_COMMISSION_PAYABLE)

    @property
    def in_transit(self) -> str:
        return self.shown(AccountKind.PAYOUTS_IN_TRANSIT)


def party_balances() -> list[PartyBalance]:
    """Every merchant's and agent's balances per currency: one query for the balances, one per kind of party
    for the names."""
    accounts = (
        LedgerAccount.objects.filter(party_kind__in=[PartyKind.MERCHANT, PartyKind.AGENT])
        .annotate(raw_sum=Coalesce(Sum("entries__amount_minor"), 0))
        .order_by("party_kind", "party_id", "currency", "kind")
    )
    rows: dict[tuple[str, int, str], PartyBalance] = {}
    for a in accounts:
        row = rows.setdefault(
            (a.party_kind, a.party_id, a.currency), PartyBalance(a.party_kind, a.party_id, a.currency)
        )
        row.by_kind[a.kind] = a.balance_minor if a.kind in BALANCE_ROW_KINDS else normal_side(a.kind, a.raw_sum)
    labels = party_labels((k, pk) for k, pk, _c in rows)
    for (k, pk, _c), row in rows.items():
        row.label = labels[(k, pk)]
    return sorted(rows.values(), key=lambda r: (r.party_kind != PartyKind.MERCHANT, r.label, r.currency))


# --- statements ------------------------------------------------------------------------------------------------


class StatementForm(forms.Form):
    party = forms.ModelChoiceField(queryset=Merchant.objects.none(), widget=UnfoldAdminSelectWidget)
    currency = forms.ChoiceField(label=_("currency"), widget=UnfoldAdminSelectWidget)
    date_from = forms.DateField(label=_("from (inclusive)"), widget=UnfoldAdminSingleDateWidget)
    date_to = forms.DateField(label=_("to (inclusive)"), widget=UnfoldAdminSingleDateWidget)

    def __init__(self, *args, party_kind: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if party_kind == PartyKind.AGENT:
            self.fields["party"].queryset = Agent.objects.order_by("name")
            self.fields["party"].label = _("agent")
        else:
            self.fields["party"].queryset = Merchant.objects.order_by("name")
            self.fields["party"].label = _("merchant")
        currencies = LedgerAccount.objects.filter(party_kind=party_kind).values_list("currency", flat=True).distinct()
        self.fields["currency"].choices = [(c, c) for c in sorted(set(currencies) | {"CNY"})]
        today = timezone.localdate()
        self.fields["date_from"].initial = today.replace(day=1)
        self.fields["date_to"].initial = today

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError(_("The start date is after the end date."))
        return cleaned


@dataclass(frozen=True)
class StatementLine:
    at: datetime
    key: str
    kind: str
    reference: str
    memo: str
    account_kind: str
    amount_minor: int  # normal side
    currency: str

    @property
    def amount(self) -> str:
        return money_label(self.amount_minor, self.currency)

    @property
    def account_label(self) -> str:
        return account_kind_label(self.account_kind)


@dataclass(frozen=True)
class StatementTotal:
    account_kind: str
    opening_minor: int
    movement_minor: int
    currency: str

    @property
    def closing_minor(self) -> int:
        return self.opening_minor + self.movement_minor

    @property
    def account_label(self) -> str:
        return account_kind_label(self.account_kind)

    @property
    def opening(self) -> str:
        return money_label(self.opening_minor, self.currency)

    @property
    def movement(self) -> str:
        return money_label(self.movement_minor, self.currency)

    @property
    def closing(self) -> str:
        return money_label(self.closing_minor, self.currency)


@dataclass(frozen=True)
class Statement:
    party_kind: str
    party_id: int
    currency: str
    date_from: date
    date_to: date
    lines: tuple[StatementLine, ...]
    totals: tuple[StatementTotal, ...]


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def party_statement(*, party_kind: str, party_id: int, currency: str, date_from: date, date_to: date) -> Statement:
    """The entries of one party's accounts in one currency between two shop-time dates (inclusive), with each
    account's opening and closing balance. Three queries."""
    start, end = _day_start(date_from), _day_start(date_to + timedelta(days=1))
    accounts = {
        a.pk: a.kind for a in LedgerAccount.objects.filter(party_kind=party_kind, party_id=party_id, currency=currency)
    }
    opening = {
        row["account_id"]: row["s"]
        for row in LedgerEntry.objects.filter(account_id__in=list(accounts), transaction__created_at__lt=start)
        .values("account_id")
        .annotate(s=Sum("amount_minor"))
    }
    entries = (
        LedgerEntry.objects.filter(
            account_id__in=list(accounts), transaction__created_at__gte=start, transaction__created_at__lt=end
        )
        .select_related("transaction")
        .order_by("transaction__created_at", "pk")
    )
    lines = []
    movement: dict[int, int] = defaultdict(int)
    for e in entries:
        kind = accounts[e.account_id]
        movement[e.account_id] += e.amount_minor
        lines.append(
            StatementLine(
                at=e.transaction.created_at,
                key=e.transaction.idempotency_key,
                kind=e.transaction.kind,
                reference=e.transaction.reference,
                memo=e.transaction.memo,
                account_kind=kind,
                amount_minor=normal_side(kind, e.amount_minor),
                currency=e.currency,
            )
        )
    totals = tuple(
        StatementTotal(
            account_kind=kind,
            opening_minor=normal_side(kind, opening.get(pk, 0)),
            movement_minor=normal_side(kind, movement.get(pk, 0)),
            currency=currency,
        )
        for pk, kind in sorted(accounts.items(), key=lambda item: item[1])
    )
    return Statement(party_kind, party_id, currency, date_from, date_to, tuple(lines), totals)


CSV_HEADER = [
    _("time"),
    _("transaction"),
    _("kind"),
    _("reference"),
    _("account"),
    _("amount"),
    _("currency"),
    _("memo or reason"),
]


def statement_csv(statement: Statement, *, party_name: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    filename = f"statement-{statement.party_kind}-{statement.party_id}-{statement.date_from}-{statement.date_to}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.write("\ufeff")  # Excel opens UTF-8 (Chinese names) only with a BOM
    writer = csv.writer(response)
    writer.writerow(CSV_HEADER)
    for line in statement.lines:
        writer.writerow(
            [
                timezone.localtime(line.at).isoformat(timespec="seconds"),
                line.key,
                line.kind,
                line.reference,
                line.account_kind,
                major_str(line.amount_minor, line.currency),
                line.currency,
                line.memo,
            ]
        )
    return response


# --- the ledger itself -----------------------------------------------------------------------------------------


class LedgerEntryInline(ReadOnlyAdminMixin, TabularInline):
    model = LedgerEntry
    fields = ["party_display", "account_kind_display", "amount_display"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    hide_title = True  # the row title is the entry's str(), in minor units

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account")

    def get_formset(self, request, obj=None, **kwargs):
        # An inline instance lives for one request: the transaction's party names are read once, not per line.
        self._labels = party_labels(obj.entries.values_list("account__party_kind", "account__party_id")) if obj else {}
        return super().get_formset(request, obj, **kwargs)

    @admin.display(description=_("party"))
    def party_display(self, obj: LedgerEntry) -> str:
        key = (obj.account.party_kind, obj.account.party_id)
        labels = getattr(self, "_labels", {})
        return labels[key] if key in labels else party_labels([key])[key]

    @admin.display(description=_("account"))
    def account_kind_display(self, obj: LedgerEntry) -> str:
        return account_kind_label(obj.account.kind)

    @admin.display(description=_("amount (debit +, credit −)"))
    def amount_display(self, obj: LedgerEntry) -> str:
        return money_label(obj.amount_minor, obj.currency)


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Append-only: read, never added, changed or deleted here (a correction is an adjustment posting)."""

    list_display = ["created_at", "idempotency_key", "kind", "reference", "total_display", "line_count"]
    list_filter = ["kind", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=idempotency_key", "=reference"]
    readonly_fields = ["idempotency_key", "kind", "reference", "memo", "total_display", "created_at"]
    fields = readonly_fields
    inlines = [LedgerEntryInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                debits=Coalesce(Sum("entries__amount_minor", filter=Q(entries__amount_minor__gt=0)), 0),
                lines=Count("entries"),
                first_currency=Min("entries__currency"),
                last_currency=Max("entries__currency"),
            )
        )

    @admin.display(description=_("amount moved"), ordering="debits")
    def total_display(self, obj: LedgerTransaction) -> str:
        if obj.first_currency is None:
            return "—"
        if obj.first_currency != obj.last_currency:
            return _("several currencies")
        return money_label(obj.debits, obj.first_currency)

    @admin.display(description=_("lines"), ordering="lines")
    def line_count(self, obj: LedgerTransaction) -> int:
        return obj.lines


@admin.register(LedgerCheckRun)
class LedgerCheckRunAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["started_at", "ok", "problem_count", "stale_suspense_count", "duration"]
    list_filter = ["ok"]
    readonly_fields = [
        "started_at",
        "finished_at",
        "ok",
        "problem_count",
        "stale_suspense_count",
        "problems_display",
        "stale_display",
        "notices_display",
        "counts_display",
    ]
    fields = readonly_fields

    @admin.display(description=_("duration"))
    def duration(self, obj: LedgerCheckRun) -> str:
        return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"

    @admin.display(description=_("problems found"))
    def problems_display(self, obj: LedgerCheckRun) -> str:
        return _finding_table(obj.problems)

    @admin.display(description=_("suspense past its time"))
    def stale_display(self, obj: LedgerCheckRun) -> str:
        return _finding_table(obj.stale_suspense)

    @admin.display(description=_("notices"))
    def notices_display(self, obj: LedgerCheckRun) -> str:
        return _finding_table(obj.notices)

    @admin.display(description=_("what was checked"))
    def counts_display(self, obj: LedgerCheckRun) -> str:
        labels = {
            "balance_rows": _("balance rows"),
            "transactions": _("transactions"),
            "payments": _("payments"),
            "refunds": _("refunds"),
        }
        return ", ".join(f"{labels.get(k, k)}: {v}" for k, v in sorted((obj.counts or {}).items()))

    def changelist_view(self, request, extra_context=None):
        self.message_user(request, check_summary(ledger_check_last())["message"], messages.INFO)
        return super().changelist_view(request, extra_context=extra_context)


FINDING_LABELS = {
    "balance_row_drift": _("kept balance differs from its entries"),
    "currency_unbalanced": _("a currency's accounts do not sum to zero"),
    "transaction_unbalanced": _("a transaction does not sum to zero"),
    "payment_unposted": _("paid trade without its sale or suspense posting"),
    "posting_without_payment": _("posting without a paid trade or a final refund"),
    "posting_kind_mismatch": _("posting key and kind disagree"),
    "refund_unposted": _("final refund without its reversal"),
    "suspense_stale": _("in suspense for too long"),
    "calendar_uncovered": _("the holiday file does not declare this year: add its holidays and make-up days"),
}


def _finding_table(findings: list[dict]) -> str:
    """Each finding as a row: its label, then its fields (an `_minor` amount shown in major units)."""
    if not findings:
        return "—"

    def cells(item: dict) -> str:
        currency = item.get("currency") or ""
        parts = []
        for key, value in item.items():
            if key == "code" or (key == "currency" and currency):
                continue
            if key.endswith("_minor") and isinstance(value, int) and currency:
                parts.append((key.removesuffix("_minor"), money_label(value, currency)))
            else:
                parts.append((key, str(value)))
        return format_html_join(", ", "{}: {}", parts)

    return format_html(
        "<table>{}</table>",
        format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td></tr>",
            ((FINDING_LABELS.get(item.get("code"), item.get("code")), cells(item)) for item in findings),
        ),
    )


from settlement import admin_payouts  # noqa: E402, F401  (registers the payouts admins)
