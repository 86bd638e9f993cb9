"""Operator back office. Actions call services; secrets are masked and revealing one is audited."""

from __future__ import annotations

import csv
import json
import re

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.views import ChangeList  # unfold's change list, so the theme's list tools keep working
from unfold.widgets import (
    UnfoldAdminFileFieldWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanWidget,
)

from cardshop.admin_alerts import MerchantAlertAdmin  # noqa: F401 (registers the merchant alerts' admin)
from cardshop.admin_api_keys import ApiKeyAdmin  # noqa: F401 (registers the API keys' admin)
from cardshop.admin_display import channel_name, masked_email, state_badge, timeline_html
from cardshop.admin_review import OrderInReviewAdmin, OrderReviewMixin
from cardshop.admin_webhooks import WebhookDeliveryAdmin  # noqa: F401 (registers the webhooks' admin)
from cardshop.models import (
    CardSecret,
    Category,
    Coupon,
    CouponKind,
    DeliveryKind,
    MerchantMember,
    MerchantShopPage,
    Order,
    OrderInReview,
    OrderState,
    Product,
    SecretRevealLog,
    SecretStatus,
    ShopAnnouncement,
)
from cardshop.services import delivery, images, orders, refunds, stock
from core.admin_display import MajorUnitsFormMixin, ReadOnlyAdminMixin, major_str, money_label
from core.errors import DomainError
from core.forms import WriteOnlySecretField
from core.money import Money, MoneyError
from payments import facade as payments
from payments.contracts import REFUND_STATUS_LABELS
from settlement import facade as settlement


class ImportSecretsForm(forms.Form):
    text = forms.CharField(
        label=_("Secrets, one per line"), widget=UnfoldAdminTextareaWidget(attrs={"rows": 12}), required=False
    )
    file = forms.FileField(label=_("…or a text file"), required=False, widget=UnfoldAdminFileFieldWidget)


class BuyerFieldsField(forms.Field):
    """The buyer's input fields of a manual product as one row per line, "name | label | required", instead of
    raw JSON (a JSON list pasted whole is still read)."""

    widget = UnfoldAdminTextareaWidget(attrs={"rows": 4, "placeholder": _("account | Game account | required")})
    NAME_RE = re.compile(r"[A-Za-z0-9_]{1,40}")

    @staticmethod
    def _flags() -> tuple[set[str], set[str]]:
        """The words for "required" and "optional": English always, and the operator's language."""
        return {"required", str(_("required")).lower()}, {"optional", str(_("optional")).lower()}

    def prepare_value(self, value):
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip().startswith("[") else value
            except ValueError:
                return value
        if isinstance(value, list):
            return "\n".join(
                " | ".join(
                    [f.get("name", ""), f.get("label", ""), str(_("required")) if f.get("required") else ""]
                ).rstrip(" |")
                for f in value
                if isinstance(f, dict)
            )
        return value

    def to_python(self, value) -> list[dict]:
        text = (value or "").strip()
        if text.startswith("["):
            try:
                data = json.loads(text)
            except ValueError:
                raise forms.ValidationError(_("Write one field per line: name | label | required.")) from None
            return data if isinstance(data, list) else []
        rows: list[dict] = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split("|")]
            name, label = parts[0], parts[1] if len(parts) > 1 else ""
            flag = parts[2].lower() if len(parts) > 2 else ""
            required_words, optional_words = self._flags()
            if not self.NAME_RE.fullmatch(name) or flag not in {"", *required_words, *optional_words} or len(parts) > 3:
                raise forms.ValidationError(
                    _("Line %(n)d: write name | label | required, the name in letters, digits or _.") % {"n": n}
                )
            if any(r["name"] == name for r in rows):
                raise forms.ValidationError(_("Line %(n)d: the name %(name)s is used twice.") % {"n": n, "name": name})
            rows.append({"name": name, "label": label or name, "required": flag in required_words})
        return rows


class PriceTiersText(forms.CharField):
    """Wholesale tiers typed one per line as "quantity | unit price" in major units ("10 | 9.00"); turned into
    minor units of the product's currency by the form's clean (which knows the currency)."""

    widget = UnfoldAdminTextareaWidget(attrs={"rows": 3})

    def prepare_value(self, value):
        if isinstance(value, list):
            currency = getattr(self, "currency", "")
            lines = []
            for tier in value:
                try:
                    price = Money(tier["unit_price_minor"], currency).to_decimal_str()
                except (MoneyError, KeyError, TypeError):
                    price = str(tier.get("unit_price_minor", ""))
                lines.append(f"{tier.get('min_quantity', '')} | {price}")
            return "\n".join(lines)
        return value

    def to_python(self, value) -> list[tuple[int, str]]:
        rows = []
        for n, line in enumerate((value or "").splitlines(), start=1):
            if not line.strip():
                continue
            quantity, _sep, price = (part.strip() for part in line.partition("|"))
            if not quantity.isdigit() or not price:
                raise forms.ValidationError(_("Line %(n)d: write quantity | unit price, e.g. 10 | 9.00.") % {"n": n})
            rows.append((int(quantity), price))
        return rows


class ProductAdminForm(MajorUnitsFormMixin, forms.ModelForm):
    price_tiers = PriceTiersText(
        label=_("price tiers"),
        required=False,
        help_text=_(
            "Wholesale: one tier per line, quantity | unit price, e.g. 10 | 9.00 (from 10 units each costs 9.00)."
        ),
    )
    custom_fields = BuyerFieldsField(
        label=_("buyer fields (manual delivery)"),
        required=False,
        help_text=_('One field per line: name | label | required, e.g. "account | Game account | required".'),
    )
    major_unit_fields = {"price_minor": "currency"}
    major_unit_required = ("price_minor",)
    major_unit_labels = {"price_minor": _("price")}

    reusable_secret = WriteOnlySecretField(
        label=_("reusable secret"), help_text=_("Write-only: leave empty to keep the current value.")
    )
    # The upload is decoded and re-encoded in clean_image (errors shown on the form), stored after the product.
    image = forms.FileField(
        label=_("image"), required=False, widget=UnfoldAdminFileFieldWidget(attrs={"accept": "image/*"})
    )
    image_remove = forms.BooleanField(label=_("remove the image"), required=False, widget=UnfoldBooleanWidget)

    class Meta:
        model = Product
        fields = [
            "merchant",
            "name",
            "slug",
            "category",
            "description",
            "price_minor",
            "currency",
            "delivery_kind",
            "reusable_secret",
            "custom_fields",
            "price_tiers",
            "min_quantity",
            "max_quantity",
            "is_active",
            "sort_order",
        ]

    def clean_price_tiers(self) -> list[dict]:
        currency = self.data.get("currency") or getattr(self.instance, "currency", "") or "CNY"
        tiers = []
        for quantity, price in self.cleaned_data["price_tiers"]:
            try:
                minor = Money.from_decimal_str(price, currency).amount_minor
            except MoneyError:
                raise forms.ValidationError(
                    _("%(price)s is not an amount in %(currency)s.") % {"price": price, "currency": currency}
                ) from None
            tiers.append({"min_quantity": quantity, "unit_price_minor": minor})
        return tiers

    def clean_reusable_secret(self) -> str:
        return self.cleaned_data["reusable_secret"] or (self.instance.reusable_secret if self.instance.pk else "")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["price_tiers"].currency = getattr(self.instance, "currency", "") or "CNY"
        self._prepared_image: images.PreparedImage | None = None
        picture = self.instance.picture if self.instance.pk else None
        limits = _("JPEG, PNG, GIF or WebP up to %(mb)d MB; stored as a JPEG of at most %(px)d×%(px)d pixels.") % {
            "mb": images.MAX_UPLOAD_BYTES // 1024 // 1024,
            "px": images.FULL_MAX,
        }
        if picture is not None:
            self.fields["image"].help_text = format_html(
                '<img src="{}?v={}" width="{}" height="{}" alt="" style="display:block;margin:6px 0;max-width:160px;'
                'height:auto"> {} {}',
                reverse("product_thumb", args=[self.instance.slug]),
                picture.version,
                picture.thumb_size,
                picture.thumb_size,
                _("Current image, %(w)d×%(h)d.") % {"w": picture.width, "h": picture.height},
                limits,
            )
        else:
            self.fields["image"].help_text = limits

    def clean_image(self):
        upload = self.cleaned_data.get("image")
        if not upload:
            return None
        if upload.size > images.MAX_UPLOAD_BYTES:  # refused before it is read into memory
            raise forms.ValidationError(
                _("The image is %(size).1f MB; the limit is %(max)d MB.")
                % {"size": upload.size / 1024 / 1024, "max": images.MAX_UPLOAD_BYTES // 1024 // 1024}
            )
        try:
            self._prepared_image = images.product_image_prepare(data=upload.read())
        except DomainError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from None
        return upload

    def _image_store(self, product: Product) -> None:
        if self._prepared_image is not None:
            images.product_image_set(product_id=product.pk, image=self._prepared_image)
        elif self.cleaned_data.get("image_remove"):
            images.product_image_remove(product_id=product.pk)

    def save(self, commit: bool = True):
        product = super().save(commit=commit)
        if commit:
            self._image_store(product)
        else:  # the admin saves the product itself, then calls save_m2m(): the image follows it there
            save_m2m = self.save_m2m

            def save_m2m_and_image() -> None:
                save_m2m()
                self._image_store(product)

            self.save_m2m = save_m2m_and_image
        return product


@admin.register(Product)
class ProductAdmin(ModelAdmin):
    form = ProductAdminForm
    list_display = [
        "name",
        "merchant",
        "price_display",
        "delivery_kind",
        "is_active",
        "stock_free",
        "stock_reserved",
        "stock_sold",
        "import_link",
    ]
    list_filter = ["delivery_kind", "is_active", "merchant"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]

    def get_queryset(self, request: HttpRequest):
        # The page's stock counts in the list query itself (one aggregate, no query per row).
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_free=Count("secrets", filter=Q(secrets__status=SecretStatus.AVAILABLE)),
                n_reserved=Count("secrets", filter=Q(secrets__status=SecretStatus.RESERVED)),
                n_sold=Count("secrets", filter=Q(secrets__status=SecretStatus.SOLD)),
            )
        )

    @admin.display(description=_("price"), ordering="price_minor")
    def price_display(self, obj: Product) -> str:
        return money_label(obj.price_minor, obj.currency)

    def _stock(self, obj: Product, count: int) -> int | str:
        return count if obj.delivery_kind == DeliveryKind.UNIQUE else "—"

    @admin.display(description=_("free"), ordering="n_free")
    def stock_free(self, obj: Product) -> int | str:
        return self._stock(obj, obj.n_free)

    @admin.display(description=_("reserved"), ordering="n_reserved")
    def stock_reserved(self, obj: Product) -> int | str:
        return self._stock(obj, obj.n_reserved)

    @admin.display(description=_("sold"), ordering="n_sold")
    def stock_sold(self, obj: Product) -> int | str:
        return self._stock(obj, obj.n_sold)

    @admin.display(description=_("import"))
    def import_link(self, obj: Product) -> str:
        if obj.delivery_kind != DeliveryKind.UNIQUE:
            return "—"
        return format_html(
            '<a class="button" href="{}">{}</a>',
            reverse("admin:cardshop_product_import", args=[obj.pk]),
            _("Import secrets"),
        )

    def get_urls(self):
        return [
            path("<int:pk>/import/", self.admin_site.admin_view(self.import_view), name="cardshop_product_import")
        ] + super().get_urls()

    def import_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        product = get_object_or_404(Product, pk=pk)
        if not self.has_change_permission(request, product):
            return redirect("admin:index")
        form = ImportSecretsForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                result = stock.card_secrets_import(
                    product_id=product.pk,
                    text=form.cleaned_data["text"] or "",
                    upload=upload.read() if upload else None,
                )
            except DomainError as exc:
                messages.error(request, exc.message)
            else:
                summary = _(
                    "Imported %(i)d, duplicates skipped %(d)d (%(e)d held by another product), invalid %(v)d."
                ) % {
                    "i": result.imported,
                    "d": result.duplicates,
                    "e": result.duplicates_elsewhere,
                    "v": result.invalid,
                }
                if result.encoding:
                    summary += " " + _("The file was read as %(enc)s.") % {"enc": result.encoding}
                messages.success(request, summary)
                return redirect("admin:cardshop_product_import", pk=product.pk)
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "product": product,
            "title": _("Import secrets"),
        }
        return render(request, "admin/cardshop/import_secrets.html", context)


@admin.register(CardSecret)
class CardSecretAdmin(ModelAdmin):
    list_display = ["pk", "product", "masked", "status", "order", "reserved_until", "sold_at"]
    list_filter = ["status", "product"]
    fields = ["product", "masked", "status", "order", "reserved_until", "sold_at", "reveal"]
    readonly_fields = fields
    list_select_related = ["product", "order"]

    @admin.display(description=_("secret"))
    def masked(self, obj: CardSecret) -> str:
        return obj.secret_tail()

    @admin.display(description=_("reveal"))
    def reveal(self, obj: CardSecret) -> str:
        url = reverse("admin:cardshop_cardsecret_reveal", args=[obj.pk])
        return format_html('<a class="button" href="{}">{}</a>', url, _("Reveal (audited)"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # secrets enter through the import, which encrypts and deduplicates

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_urls(self):
        return [
            path("<int:pk>/reveal/", self.admin_site.admin_view(self.reveal_view), name="cardshop_cardsecret_reveal")
        ] + super().get_urls()

    def reveal_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not request.user.has_perm("cardshop.reveal_secret"):
            raise PermissionDenied
        secret_obj = get_object_or_404(CardSecret, pk=pk)
        plaintext = None
        if request.method == "POST":
            plaintext = delivery.card_secret_reveal(
                secret_id=pk, user=request.user, reason=request.POST.get("reason", "")
            )
        context = {
            **self.admin_site.each_context(request),
            "obj": secret_obj,
            "plaintext": plaintext,
            "title": _("Reveal secret"),
        }
        return render(request, "admin/cardshop/reveal_secret.html", context)


class FulfilForm(forms.Form):
    note = forms.CharField(label=_("What the buyer receives"), widget=UnfoldAdminTextareaWidget(attrs={"rows": 6}))


class RefundConfirmForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason (kept in the audit trail and sent to the provider)"),
        max_length=200,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
    )


class PaidMoreThanOnceFilter(admin.SimpleListFilter):
    """Orders that more than one payment paid (two QRs, two channels, a provider's retry)."""

    title = _("payments")
    parameter_name = "paid_more_than_once"

    def lookups(self, request, model_admin):
        return [("yes", _("paid more than once"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(order_no__in=payments.references_paid_more_than_once())
        return queryset


class OrderChangeList(ChangeList):
    """Fetches the payment method of the whole page's orders in one payments call (no query per row)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        channels = payments.payment_channels_for_references(references=[o.order_no for o in self.result_list])
        for order in self.result_list:
            order.channel_code = channels.get(order.order_no, "")


CSV_HEADER = ["order_no", "created", "state", "product", "quantity", "amount", "currency", "email", "channel"]


@admin.register(Order)
class OrderAdmin(OrderReviewMixin, ModelAdmin):
    list_display = [
        "order_no",
        "product",
        "quantity",
        "amount_display",
        "state_display",
        "channel_display",
        "masked_email",
        "created_at",
    ]
    list_filter = [
        ("created_at", admin.DateFieldListFilter),
        "state",
        PaidMoreThanOnceFilter,
        "product__delivery_kind",
        "merchant",
    ]
    search_fields = ["order_no", "email"]
    list_select_related = ["product"]
    change_list_template = "admin/cardshop/order/change_list.html"
    readonly_fields = [
        "order_no",
        "merchant",
        "product",
        "quantity",
        "amount_display",
        "masked_email",
        "buyer_ip",
        "custom_input",
        "state_display",
        "expires_at",
        "paid_at",
        "delivered_at",
        "notified_at",
        "refunded_at",
        "created_at",
        "payments_display",
        "refund_display",
        "timeline",
        "ledger_display",
        "fulfil_link",
    ]
    fieldsets = [
        (None, {"fields": [f for f in readonly_fields if f != "ledger_display"]}),
        (_("Ledger"), {"fields": ["ledger_display"]}),
    ]
    actions = ["review_approve", "review_reject", "retry_delivery", "book_sale", "refund"]

    class Media:
        css = {"all": ["admin/cardshop-orders.css"]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Orders change only through their use cases (actions, fulfil): the page is for reading, so it has no
        # Save buttons and a forged POST to it is refused. Viewing rests on the view (or change) permission.
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # orders are never deleted: a payment may still arrive

    def get_changelist(self, request: HttpRequest, **kwargs):
        return OrderChangeList

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [*self.readonly_fields, *self.ASSESSMENT_FIELDS]

    def get_fieldsets(self, request: HttpRequest, obj=None):
        main, ledger = self.fieldsets
        return [main, (_("Risk"), {"fields": [self.assessments_field(request)]}), ledger]

    @admin.display(description=_("amount"), ordering="amount_minor")
    def amount_display(self, obj: Order) -> str:
        return money_label(obj.amount_minor, obj.currency)

    @admin.display(description=_("state"), ordering="state")
    def state_display(self, obj: Order) -> str:
        return state_badge(obj)

    @admin.display(description=_("payment method"))
    def channel_display(self, obj: Order) -> str:
        return channel_name(getattr(obj, "channel_code", ""))

    @admin.display(description=_("email"))
    def masked_email(self, obj: Order) -> str:
        return masked_email(obj.email)

    @admin.display(description=_("timeline"))
    def timeline(self, obj: Order) -> str:
        return timeline_html(
            obj,
            obj.events.order_by("created_at", "pk"),
            payments.payments_for_reference(reference=obj.order_no),
            payments.refunds_for_reference(reference=obj.order_no),
        )

    @admin.display(description=_("payments"))
    def payments_display(self, obj: Order) -> str:
        """Every payment of the order, with its status: a second one (refunded or held) is never out of sight."""
        rows = payments.payments_for_reference(reference=obj.order_no)
        if not rows:
            return "—"
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    p.out_trade_no,
                    channel_name(p.channel_code),
                    p.status.label,
                    p.amount,
                    _("pays this order") if p.out_trade_no == obj.paid_by else "",
                    p.error_code,
                )
                for p in rows
            ),
        )
        head = format_html(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th><th>{}</th></tr>",
            _("trade no"),
            _("channel"),
            _("status"),
            _("amount"),
            _("last provider note"),
        )
        return format_html('<table class="order-payments">{}{}</table>', head, body)

    @admin.display(description=_("transactions and lines"))
    def ledger_display(self, obj: Order) -> str:
        """Every ledger transaction booked for the order and each of its lines (party, account, amount)."""
        postings = settlement.postings_for_reference(reference=obj.order_no)
        if not postings:
            return "—"
        parties = settlement.party_labels((line.party_kind, line.party_id) for p in postings for line in p.lines)
        rows = []
        for p in postings:
            for i, line in enumerate(p.lines):
                rows.append(
                    (
                        "ledger-first" if i == 0 else "",
                        p.key if i == 0 else "",
                        settlement.transaction_kind_label(p.kind) if i == 0 else "",
                        parties[(line.party_kind, line.party_id)],
                        settlement.account_kind_label(line.account_kind),
                        money_label(line.amount_minor, line.currency),
                    )
                )
        head = format_html(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            _("transaction"),
            _("kind"),
            _("party"),
            _("account"),
            _("amount (debit +, credit −)"),
        )
        body = format_html_join("", '<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>', rows)
        return format_html('<table class="order-ledger">{}{}</table>', head, body)

    @admin.display(description=_("refund"))
    def refund_display(self, obj: Order) -> str:
        r = payments.refund_for_reference(reference=obj.order_no)
        return f"{r.refund_no} {REFUND_STATUS_LABELS[r.status]} {r.amount}" if r else "—"

    def export_csv_view(self, request: HttpRequest) -> HttpResponse:
        """The change list as it is filtered and searched (same query string), every page, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            cl = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:cardshop_order_changelist"))
        queryset = cl.get_queryset(request).select_related("product")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="orders-{stamp}.csv"'
        response.write("\ufeff")  # Excel opens UTF-8 (Chinese product names) only with a BOM
        writer = csv.writer(response)
        writer.writerow(CSV_HEADER)
        batch: list[Order] = []

        def flush() -> None:
            channels = payments.payment_channels_for_references(references=[o.order_no for o in batch])
            for o in batch:
                writer.writerow(
                    [
                        o.order_no,
                        timezone.localtime(o.created_at).isoformat(timespec="seconds"),
                        o.state,
                        o.product.name,
                        o.quantity,
                        major_str(o.amount_minor, o.currency),
                        o.currency,
                        masked_email(o.email),
                        channels.get(o.order_no, ""),
                    ]
                )
            batch.clear()

        for order in queryset.iterator(chunk_size=500):
            batch.append(order)
            if len(batch) == 500:
                flush()
        flush()
        return response

    # Custom powers checked by the actions' `permissions=` (absent from the menu and refused if forged).
    def has_refund_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("cardshop.refund_order")

    def has_retry_delivery_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("cardshop.retry_delivery")

    @admin.action(description=_("Refund in full (paid, delivered or undeliverable orders)"), permissions=["refund"])
    def refund(self, request: HttpRequest, queryset) -> HttpResponse | None:
        """First an intermediate page (as delete does) that lists the orders and asks for a reason; only its
        own submit, carrying `post`, refunds."""
        form = RefundConfirmForm(request.POST if request.POST.get("post") == "yes" else None)
        if not form.is_bound or not form.is_valid():
            return self._orders_confirm(
                request,
                queryset,
                form,
                action="refund",
                title=_("Refund these orders?"),
                card_title=_("Refund"),
                warning=_(
                    "Each order below is refunded in full through the channel that took its payment. "
                    "This cannot be undone."
                ),
                submit_label=_("Yes, refund"),
                list_id="refund-orders",
            )
        for order in queryset:
            try:
                view = refunds.order_refund_request(
                    order_no=order.order_no, actor=request.user.get_username(), reason=form.cleaned_data["reason"]
                )
            except DomainError as exc:
                messages.error(request, f"{order.order_no}: {exc.message}")
            else:
                messages.success(
                    request,
                    _("%(no)s: refund %(refund)s %(status)s")
                    % {"no": order.order_no, "refund": view.refund_no, "status": REFUND_STATUS_LABELS[view.status]},
                )
        return None

    @admin.display(description=_("manual delivery"))
    def fulfil_link(self, obj: Order) -> str:
        if obj.product.delivery_kind != DeliveryKind.MANUAL or obj.state != OrderState.PAID:
            return "—"
        return format_html(
            '<a class="button" href="{}">{}</a>', reverse("admin:cardshop_order_fulfil", args=[obj.pk]), _("Fulfil")
        )

    @admin.action(description=_("Retry delivery (after restocking)"), permissions=["retry_delivery"])
    def retry_delivery(self, request: HttpRequest, queryset) -> None:
        for order in queryset:
            try:
                done = orders.order_delivery_retry(order_no=order.order_no, actor=request.user.get_username())
            except DomainError as exc:
                messages.error(request, f"{order.order_no}: {exc.message}")
            else:
                level = messages.SUCCESS if done else messages.WARNING
                messages.add_message(
                    request,
                    level,
                    _("%(no)s: delivered") % {"no": order.order_no}
                    if done
                    else _("%(no)s: still short of stock") % {"no": order.order_no},
                )

    @admin.action(
        description=_("Book the sale held in suspense (after fixing the plan)"), permissions=["retry_delivery"]
    )
    def book_sale(self, request: HttpRequest, queryset) -> None:
        for order in queryset:
            try:
                booked = orders.order_sale_book(order_no=order.order_no, actor=request.user.get_username())
            except DomainError as exc:
                messages.error(request, f"{order.order_no}: {exc.message}")
            else:
                messages.add_message(
                    request,
                    messages.SUCCESS if booked else messages.WARNING,
                    _("%(no)s: sale booked") % {"no": order.order_no}
                    if booked
                    else _("%(no)s: the sale was already booked") % {"no": order.order_no},
                )

    def get_urls(self):
        return [
            path("<int:pk>/fulfil/", self.admin_site.admin_view(self.fulfil_view), name="cardshop_order_fulfil"),
            path("export.csv", self.admin_site.admin_view(self.export_csv_view), name="cardshop_order_export"),
        ] + super().get_urls()

    def fulfil_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not request.user.has_perm("cardshop.fulfil_order"):
            raise PermissionDenied
        order = get_object_or_404(Order, pk=pk)
        form = FulfilForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                orders.order_fulfil_manual(
                    order_no=order.order_no, note=form.cleaned_data["note"], actor=request.user.get_username()
                )
            except DomainError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, _("Order delivered."))
                return redirect("admin:cardshop_order_change", order.pk)
        context = {**self.admin_site.each_context(request), "form": form, "order": order, "title": _("Fulfil order")}
        return render(request, "admin/cardshop/fulfil_order.html", context)


admin.site.register(OrderInReview, OrderInReviewAdmin)


@admin.register(SecretRevealLog)
class SecretRevealLogAdmin(ReadOnlyAdminMixin, ModelAdmin):
    list_display = ["created_at", "user", "secret", "reason"]
    readonly_fields = ["created_at", "user", "secret", "reason"]


# --- Stock withdrawal (issue 9 point 14) -----------------------------------------------------------------------
# Kept as one block so the roles work on this file can move it into CardSecretAdmin as it sees fit.


class WithdrawSecretsForm(forms.Form):
    reason = forms.CharField(
        label=_("Why are they withdrawn (leaked, bad, ...)?"), max_length=200, widget=UnfoldAdminTextInputWidget
    )


def _has_withdraw_permission(self, request: HttpRequest) -> bool:
    return request.user.has_perm("cardshop.withdraw_cardsecret")


@admin.action(description=_("Withdraw selected unsold secrets (audited)"), permissions=["withdraw"])
def card_secrets_withdraw(modeladmin: ModelAdmin, request: HttpRequest, queryset) -> HttpResponse | None:
    form = WithdrawSecretsForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        done = 0
        for pk in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                stock.secret_withdraw(
                    secret_id=pk, reason=form.cleaned_data["reason"], actor=request.user.get_username()
                )
            except DomainError as exc:
                messages.error(request, f"#{pk}: {exc.message}")
            else:
                done += 1
        if done:
            messages.success(request, _("Withdrew %(n)d secrets.") % {"n": done})
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "form": form,
        "secrets": queryset.select_related("product").order_by("pk"),
        "action": "card_secrets_withdraw",
        "title": _("Withdraw card secrets"),
    }
    return render(request, "admin/cardshop/withdraw_secrets.html", context)


CardSecretAdmin.has_withdraw_permission = _has_withdraw_permission
CardSecretAdmin.actions = [*CardSecretAdmin.actions, card_secrets_withdraw]
CardSecretAdmin.fields = CardSecretAdmin.readonly_fields = [*CardSecretAdmin.fields, "withdrawn_at", "withdraw_reason"]


# --- Storefront catalog: categories, the shop announcement (issue 10) --------------------------------------------
# Kept together at the end of the file; the product image is edited on the product form above.


@admin.register(Category)
class CategoryAdmin(ModelAdmin):
    list_display = ["name", "slug", "sort_order", "is_active", "products_count"]
    list_editable = ["sort_order", "is_active"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).annotate(n_products=Count("products"))

    @admin.display(description=_("products"), ordering="n_products")
    def products_count(self, obj: Category) -> int:
        return obj.n_products


@admin.register(ShopAnnouncement)
class ShopAnnouncementAdmin(ModelAdmin):
    """One announcement for the whole shop: added once, then edited and switched on or off, never deleted."""

    list_display = ["__str__", "is_active", "text_start", "updated_at"]
    fields = ["text", "is_active"]

    @admin.display(description=_("text"))
    def text_start(self, obj: ShopAnnouncement) -> str:
        return obj.text if len(obj.text) <= 60 else obj.text[:60] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not ShopAnnouncement.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # switched off instead: the row stays for the next notice


ProductAdmin.list_filter = [*ProductAdmin.list_filter, "category"]


@admin.register(MerchantShopPage)
class MerchantShopPageAdmin(ModelAdmin):
    """A merchant's page at /s/<merchant slug>/ (every active merchant has one; this row adds its announcement)."""

    list_display = ["merchant", "announcement_start", "updated_at"]
    fields = ["merchant", "announcement"]

    @admin.display(description=_("announcement"))
    def announcement_start(self, obj: MerchantShopPage) -> str:
        return obj.announcement if len(obj.announcement) <= 60 else obj.announcement[:60] + "…"

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return ["merchant"] if obj else []


@admin.register(MerchantMember)
class MerchantMemberAdmin(ModelAdmin):
    """Who may log in to a merchant's console (/merchant/). Make the user first (not staff), and its authenticator
    app under *Authenticator apps* when a second factor is required."""

    list_display = ["user", "merchant", "created_at"]
    list_select_related = ["user", "merchant"]
    autocomplete_fields = ["user"]
    fields = ["user", "merchant"]


class CouponForm(MajorUnitsFormMixin, forms.ModelForm):
    major_unit_fields = {"amount_off_minor": "currency"}
    major_unit_labels = {"amount_off_minor": _("amount off")}

    class Meta:
        model = Coupon
        fields = [
            "merchant",
            "code",
            "kind",
            "amount_off_minor",
            "currency",
            "percent_off",
            "product",
            "max_uses",
            "per_buyer_limit",
            "valid_from",
            "valid_until",
            "is_active",
        ]

    def clean_code(self) -> str:
        return (self.cleaned_data.get("code") or "").strip().upper()


@admin.register(Coupon)
class CouponAdmin(ModelAdmin):
    """Coupons of the merchants: fixed or percent, for one product or all of a merchant's, with limits and a window.
    `uses` counts the orders holding one (given back when an order lapses unpaid)."""

    form = CouponForm
    list_display = ["code", "merchant", "kind", "off_label", "product", "uses", "max_uses", "valid_until", "is_active"]
    list_filter = ["is_active", "kind", "merchant"]
    search_fields = ["code"]
    list_select_related = ["merchant", "product"]
    readonly_fields = ["uses"]

    @admin.display(description=_("off"))
    def off_label(self, obj: Coupon) -> str:
        if obj.kind == CouponKind.PERCENT:
            return f"{obj.percent_off} %"
        return money_label(obj.amount_off_minor or 0, obj.currency)
