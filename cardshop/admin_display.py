"""What the order pages of the admin say in words: the timeline, the state badge, channel names, risk's
assessments."""

from __future__ import annotations

from collections.abc import Iterable

from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from cardshop.models import Order, OrderEvent
from core.admin_display import money_label
from payments.contracts import PaymentView, RefundView
from risk.contracts import AssessmentView

CHANNEL_NAMES = {
    "alipay": gettext_lazy("Alipay"),
    "wechatpay": gettext_lazy("WeChat Pay"),
    "epay": gettext_lazy("epay"),
    "stripe": gettext_lazy("Stripe"),
    "bankgw": gettext_lazy("bank gateway"),
}


def channel_name(code: str) -> str:
    return str(CHANNEL_NAMES.get(code, code)) if code else "—"


def masked_email(email: str) -> str:
    name, _sep, domain = email.partition("@")
    return f"{name[:2]}***@{domain}"


def state_badge(order: Order) -> SafeString:
    """The order state as a coloured badge; the CSS class is the state's code (cardshop/static/admin/)."""
    return format_html('<span class="state-badge state-{}">{}</span>', order.state, order.get_state_display())


def _codes(n: int) -> str:
    return ngettext("%(n)d code", "%(n)d codes", n) % {"n": n}


def event_text(event: OrderEvent, order: Order, pays: dict[str, PaymentView], refunds: dict[str, RefundView]) -> str:
    """One timeline line in words; an event kind this does not know is shown by its code and detail."""
    d = event.detail or {}
    kind = event.kind
    trade = d.get("out_trade_no", "")
    pay = pays.get(trade)
    refund = refunds.get(d.get("refund_no", ""))
    if kind == "created":
        return _("Order created: %(q)d × %(product)s, %(amount)s") % {
            "q": d.get("quantity", order.quantity),
            "product": order.product,
            "amount": money_label(order.amount_minor, order.currency),
        }
    if kind == "risk_review":
        return _("Held by risk for an operator's review; its codes are reserved meanwhile")
    if kind == "review_approved":
        return _("Approved after review by %(actor)s: the buyer may pay") % {"actor": event.actor}
    if kind == "review_rejected":
        text = _("Rejected after review by %(actor)s") % {"actor": event.actor}
        if d.get("reason"):
            text += ": " + d["reason"]
        if d.get("released"):
            text += "; " + _("%(codes)s released to stock") % {"codes": _codes(d["released"])}
        return text
    if kind == "paid":
        text = _("Paid through %(channel)s, trade %(trade)s, %(amount)s") % {
            "channel": channel_name(pay.channel_code if pay else ""),
            "trade": trade,
            "amount": pay.amount if pay else money_label(order.amount_minor, order.currency),
        }
        if d.get("late"):
            text += " " + _("(after the order had expired or been cancelled: honoured)")
        return text
    if kind == "awaiting_manual_delivery":
        return _("Waiting for manual delivery by an operator")
    if kind == "undeliverable":
        return _("Paid, but %(codes)s short in stock: restock and retry delivery") % {
            "codes": _codes(d.get("missing", 0))
        }
    if kind == "delivered":
        if d.get("manual"):
            return _("Delivered by hand by %(actor)s") % {"actor": event.actor}
        if d.get("secrets"):
            return _("Delivered %(codes)s") % {"codes": _codes(d["secrets"])}
        return _("Delivered")
    if kind in ("expired", "cancelled"):
        text = _("Expired unpaid") if kind == "expired" else _("Cancelled by %(actor)s") % {"actor": event.actor}
        if d.get("released"):
            text += "; " + _("%(codes)s released to stock") % {"codes": _codes(d["released"])}
        return text
    if kind == "extra_payment":
        what = _("Second payment %(trade)s through %(channel)s, %(amount)s") % {
            "trade": trade,
            "channel": channel_name(pay.channel_code if pay else ""),
            "amount": pay.amount if pay else "—",
        }
        if d.get("refund_no"):
            return what + ": " + _("refund %(refund)s started automatically") % {"refund": d["refund_no"]}
        if d.get("held") is True:
            return what + ": " + _("held for an operator (automatic refunds are off)")
        return what + ": " + _("held for an operator, the channel cannot refund it (%(code)s)") % {"code": d["held"]}
    if kind.startswith("extra_payment_refund_"):
        trade = refund.out_trade_no if refund else "—"
        if kind == "extra_payment_refund_succeeded":
            return _("Second payment %(trade)s refunded automatically (refund %(refund)s)") % {
                "trade": trade,
                "refund": d.get("refund_no", ""),
            }
        return _("Refund %(refund)s of the second payment %(trade)s failed: return it by hand") % {
            "trade": trade,
            "refund": d.get("refund_no", ""),
        }
    if kind == "refund_requested":
        text = _("Refund %(refund)s of %(amount)s requested by %(actor)s") % {
            "refund": d.get("refund_no", ""),
            "amount": refund.amount if refund else money_label(order.amount_minor, order.currency),
            "actor": event.actor,
        }
        if refund and refund.reason:
            text += ": " + refund.reason
        return text
    if kind == "refunded":
        return _("Refunded %(amount)s (refund %(refund)s)") % {
            "amount": refund.amount if refund else money_label(order.amount_minor, order.currency),
            "refund": d.get("refund_no", ""),
        }
    if kind == "refund_failed":
        return _("Refund %(refund)s failed: the order is paid again") % {"refund": d.get("refund_no", "")}
    if kind == "ledger_sale_refused":
        return _("The ledger refused the sale of trade %(trade)s (%(code)s): its money waits in suspense") % {
            "trade": trade,
            "code": d.get("code", ""),
        }
    if kind == "ledger_booked":
        return _("Sale of trade %(trade)s booked out of suspense by %(actor)s") % {"trade": trade, "actor": event.actor}
    if kind == "split_succeeded":
        return _("The provider split the platform's fee off (split %(split)s): the merchant has the rest") % {
            "split": d.get("split_no", "")
        }
    if kind == "split_failed":
        return _("The provider refused split %(split)s (%(reason)s): split it again under Provider splits") % {
            "split": d.get("split_no", ""),
            "reason": d.get("reason", ""),
        }
    if kind == "split_refused":
        return _("The split of trade %(trade)s could not be asked for (%(code)s)") % {
            "trade": trade,
            "code": d.get("code", ""),
        }
    if kind == "ledger_unbooked":
        return _("The ledger could not book trade %(trade)s (%(code)s): see the ledger check") % {
            "trade": trade or d.get("refund_no", "") or d.get("split_no", ""),
            "code": d.get("code", ""),
        }
    return f"{kind} {d}" if d else kind


def timeline_html(
    order: Order, events: Iterable[OrderEvent], pays: Iterable[PaymentView], refunds: Iterable[RefundView]
) -> SafeString:
    by_trade = {p.out_trade_no: p for p in pays}
    by_refund = {r.refund_no: r for r in refunds}
    rows = [
        (
            when(e.created_at),
            event_text(e, order, by_trade, by_refund),
            e.actor,
        )
        for e in events
    ]
    if not rows:
        return format_html("{}", "—")
    body = format_html_join("", '<li><time>{}</time> {} <span class="timeline-actor">({})</span></li>', rows)
    return format_html('<ol class="order-timeline">{}</ol>', body)


def when(moment, fmt: str = "DATETIME_FORMAT") -> str:
    """A moment in shop time as the admin prints it (`fmt`: a format name or a date format string)."""
    return formats.date_format(timezone.localtime(moment), fmt) if moment else "—"


def reasons_html(reasons: Iterable[str]) -> SafeString:
    """Reason codes as the rules name them (identifiers, shown as code)."""
    codes = list(reasons)
    if not codes:
        return format_html("{}", "—")
    return format_html_join(" ", "<code>{}</code>", ((c,) for c in codes))


def assessments_html(assessments: Iterable[AssessmentView], *, link: bool) -> SafeString:
    """Each of an order's risk assessments, newest first: what was decided and why, by which rule set and model,
    and every feature it saw (folded). `link`: each row links to its page under Risk."""
    rows = []
    for a in assessments:
        at = when(a.created_at)
        if link:
            at = format_html(
                '<a class="text-primary-600 underline" href="{}">{}</a>',
                reverse("admin:risk_assessment_change", args=[a.assessment_id]),
                at,
            )
        features = format_html(
            "<details><summary>{}</summary><ul>{}</ul></details>",
            ngettext("%(n)d feature", "%(n)d features", len(a.features)) % {"n": len(a.features)},
            format_html_join("", "<li><code>{}</code>: {}</li>", a.features),
        )
        decision = format_html('<span class="decision-badge decision-{}">{}</span>', a.decision.value, a.decision_label)
        if a.degraded:
            decision = format_html(
                '{}<br><span class="assessment-note">{}</span>',
                decision,
                _("counters unavailable: decided by the fallback"),
            )
        rows.append(
            (
                at,
                a.stage_label,
                decision,
                reasons_html(a.reasons),
                a.score_label,
                f"v{a.ruleset_version}" if a.ruleset_version is not None else "—",
                a.model_version or "—",
                features,
            )
        )
    if not rows:
        return format_html("{}", _("No assessment is stored for this order."))
    head = format_html(
        "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        _("at"),
        _("stage"),
        _("decision"),
        _("reason codes"),
        _("score"),
        _("rule set version"),
        _("model version"),
    )
    # The features fold into a full-width row under their assessment: two dozen of them fit no column.
    body = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"
        '<tr class="assessment-features"><td colspan="7">{}</td></tr>',
        rows,
    )
    return format_html('<table class="order-assessments">{}{}</table>', head, body)
