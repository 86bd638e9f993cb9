"""The risk review in the back office: the approve and reject actions (on the order list and on the review queue),
the confirmation page that every order action asking for a reason shares, and the review queue: the orders risk
held for review, oldest first, with what their assessment found. Registered from cardshop.admin."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.views import ChangeList
from unfold.widgets import UnfoldAdminTextareaWidget

from cardshop.admin_display import assessments_html, masked_email, reasons_html, when
from cardshop.models import Order
from cardshop.services import review
from core.admin_display import money_label
from core.errors import DomainError
from risk import facade as risk

REVIEW_PERMISSION = "cardshop.review_order"
SHORT = "m-d H:i"  # as the dashboard's lists print a moment: a review lasts a day, not a year


class ReviewRejectForm(forms.Form):
    reason = forms.CharField(
        label=_("Why is it rejected (kept in the audit trail)?"),
        max_length=200,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
    )


class OrderReviewMixin:
    """For a ModelAdmin of orders: the review actions, offered only with the review power (absent from the menu
    and refused if forged), the intermediate page of an action that asks for a reason, and the order's risk
    assessments as a read-only field."""

    ASSESSMENT_FIELDS = ("assessments_display", "assessments_linked")

    def _orders_confirm(self, request: HttpRequest, queryset, form, *, action: str, **texts) -> TemplateResponse:
        """The intermediate page of an action that asks for a reason (as delete does): it lists the orders, and
        only its own submit, carrying `post`, carries the action out. Cancelling goes back to this admin's list."""
        context = {
            **self.admin_site.each_context(request),
            **texts,
            "action": action,
            "orders": list(queryset.select_related("product")),
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/cardshop/orders_confirm.html", context)

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REVIEW_PERMISSION)

    @admin.action(description=_("Approve after review: the buyer may pay"), permissions=["review"])
    def review_approve(self, request: HttpRequest, queryset) -> None:
        for order in queryset:
            try:
                review.order_review_approve(order_no=order.order_no, actor=request.user.get_username())
            except DomainError as exc:
                messages.error(request, f"{order.order_no}: {exc.message}")
            else:
                messages.success(request, _("%(no)s: approved") % {"no": order.order_no})

    @admin.action(description=_("Reject after review (with a reason)"), permissions=["review"])
    def review_reject(self, request: HttpRequest, queryset) -> HttpResponse | None:
        """An intermediate page asks for the reason; only its own submit, carrying `post`, rejects."""
        form = ReviewRejectForm(request.POST if request.POST.get("post") == "yes" else None)
        if not form.is_bound or not form.is_valid():
            return self._orders_confirm(
                request,
                queryset,
                form,
                action="review_reject",
                title=_("Reject these orders?"),
                card_title=_("Reject after review"),
                warning=_("Each order below is cancelled and its codes go back on sale. The buyer paid nothing."),
                submit_label=_("Yes, reject"),
                list_id="review-orders",
            )
        for order in queryset:
            try:
                review.order_review_reject(
                    order_no=order.order_no, actor=request.user.get_username(), reason=form.cleaned_data["reason"]
                )
            except DomainError as exc:
                messages.error(request, f"{order.order_no}: {exc.message}")
            else:
                messages.success(request, _("%(no)s: rejected") % {"no": order.order_no})
        return None

    def assessments_field(self, request: HttpRequest) -> str:
        """The assessments field this operator gets: linked to risk's pages only for those who may open them."""
        return "assessments_linked" if request.user.has_perm("risk.view_assessment") else "assessments_display"

    @admin.display(description=_("risk assessments"))
    def assessments_display(self, obj: Order) -> str:
        return assessments_html(risk.assessments_for_order(order_no=obj.order_no), link=False)

    @admin.display(description=_("risk assessments"))
    def assessments_linked(self, obj: Order) -> str:
        return assessments_html(risk.assessments_for_order(order_no=obj.order_no), link=True)


class ReviewQueueChangeList(ChangeList):
    """Fetches the latest assessment of the page's orders in one risk call (no query per row)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        latest = risk.assessments_latest_for_orders(order_nos=[o.order_no for o in self.result_list])
        for order in self.result_list:
            order.assessment = latest.get(order.order_no)


class OrderInReviewAdmin(OrderReviewMixin, ModelAdmin):
    """The review queue. Only operators with the review power see it; the order itself stays read-only here as on
    its own page, and changes only through the two actions (cardshop.services.review)."""

    list_display = [
        "order_link",
        "product_display",
        "amount_display",
        "masked_email",
        "waiting_since",
        "hold_expiry",
        "assessment_display",  # last: the one column that wraps
    ]
    list_display_links = None
    list_select_related = ["product"]
    ordering = ["created_at", "pk"]  # the longest wait on top
    search_fields = ["order_no"]
    actions = ["review_approve", "review_reject"]
    fields = [
        "order_link",
        "product",
        "quantity",
        "amount_display",
        "masked_email",
        "waiting_since",
        "hold_expiry",
    ]
    readonly_fields = [*fields, *OrderReviewMixin.ASSESSMENT_FIELDS]

    class Media:
        css = {"all": ["admin/cardshop-orders.css"]}

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        # The queue is the reviewers' page: the proxy's own view permission is nobody's, the review power is.
        return request.user.has_perm(REVIEW_PERMISSION)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_changelist(self, request: HttpRequest, **kwargs):
        return ReviewQueueChangeList

    def get_fields(self, request: HttpRequest, obj=None):
        return [*self.fields, self.assessments_field(request)]

    def get_list_display(self, request: HttpRequest):
        # A reviewer who may not open orders gets the number without a link to a page that would refuse them.
        if request.user.has_perm("cardshop.view_order"):
            return self.list_display
        return ["order_no" if f == "order_link" else f for f in self.list_display]

    @admin.display(description=_("order no"), ordering="order_no")
    def order_link(self, obj: Order) -> str:
        return format_html(
            '<a class="text-primary-600 underline" href="{}">{}</a>',
            reverse("admin:cardshop_order_change", args=[obj.pk]),
            obj.order_no,
        )

    @admin.display(description=_("product"), ordering="product__name")
    def product_display(self, obj: Order) -> str:
        return f"{obj.product} × {obj.quantity}"

    @admin.display(description=_("amount"), ordering="amount_minor")
    def amount_display(self, obj: Order) -> str:
        return money_label(obj.amount_minor, obj.currency)

    @admin.display(description=_("email"))
    def masked_email(self, obj: Order) -> str:
        return masked_email(obj.email)

    @admin.display(description=_("waiting since"), ordering="created_at")
    def waiting_since(self, obj: Order) -> str:
        return format_html(
            '{}<br><span class="assessment-note">{}</span>',
            when(obj.created_at, SHORT),
            _("for %(time)s") % {"time": timesince(obj.created_at, depth=1)},
        )

    @admin.display(description=_("hold expires"), ordering="expires_at")
    def hold_expiry(self, obj: Order) -> str:
        return when(obj.expires_at, SHORT)

    @admin.display(description=_("why held"))
    def assessment_display(self, obj: Order) -> str:
        """What the order's latest assessment found; "—" while none is stored (its write lags the checkout)."""
        assessment = getattr(obj, "assessment", None)
        if assessment is None:
            return "—"
        return format_html(
            '{}<br><span class="assessment-note">{}</span>',
            reasons_html(assessment.reasons),
            _("score %(score)s") % {"score": assessment.score_label},
        )
