"""The merchant API's endpoints. Each parses input, calls one service or selector scoped to the key's merchant, and
renders; another merchant's object is a 404, exactly like one that does not exist."""

from __future__ import annotations

from functools import partial

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from cardshop.api.idempotency import IdempotentPosts
from cardshop.api.pagination import KeysetNewestFirst
from cardshop.api.schema import WholeListSchema
from cardshop.api.serializers import (
    BalanceListSerializer,
    BalanceSerializer,
    CouponSerializer,
    EventListFilters,
    OrderCreateSerializer,
    OrderListFilters,
    OrderSecretsSerializer,
    OrderSerializer,
    PayoutFilters,
    PayoutSerializer,
    ProductSerializer,
    RefundRequestSerializer,
    RefundSerializer,
    StatementFilters,
    StatementLineSerializer,
    StockReportSerializer,
    StockUploadSerializer,
    WebhookEndpointMadeSerializer,
    WebhookEndpointSerializer,
    WebhookEventSerializer,
)
from cardshop.models import Coupon
from cardshop.selectors import (
    coupons_for_merchant,
    order_list_for_merchant,
    product_list_for_merchant,
    webhook_endpoints_for_merchant,
    webhook_events_for_merchant,
)
from cardshop.services.catalog import product_create, product_retire, product_update
from cardshop.services.checkout import order_create_for_merchant
from cardshop.services.coupons import coupon_create, coupon_deactivate
from cardshop.services.delivery import order_secrets_for_merchant
from cardshop.services.orders import order_cancel
from cardshop.services.refunds import order_refund_request
from cardshop.services.stock import card_secrets_import
from cardshop.services.webhooks import (
    webhook_endpoint_create,
    webhook_endpoint_disable,
    webhook_endpoint_enable,
    webhook_endpoint_secret_rotate,
)
from settlement import facade as settlement


def actor_of(request: Request) -> str:
    return f"api_key:{request.user.key_id}"


class MerchantApiView(IdempotentPosts, viewsets.GenericViewSet):
    """Keys, scopes, throttling and errors come from REST_FRAMEWORK in settings; this adds the key's merchant."""

    # Query parameters each action reads; any other is refused, naming it (a misspelt filter must not pass
    # silently as "no filter").
    query_params_read = {"list": {"limit", "cursor"}}

    @property
    def merchant_id(self) -> int:
        return self.request.user.merchant_id

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reading the types: no request, no merchant
            return self.get_serializer_class().Meta.model.objects.none()
        return self.merchant_queryset()

    def merchant_queryset(self):
        """The view's objects, every one of the key's merchant."""
        raise NotImplementedError

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        if self.action is None:
            return  # a method this endpoint does not take: DRF answers 405
        unknown = sorted(set(request.query_params) - self.query_params_read.get(self.action, set()))
        if unknown:
            raise ValidationError({unknown[0]: [_("Unknown parameter.")]})


class ProductViewSet(MerchantApiView, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = ProductSerializer
    http_method_names = ["get", "post", "patch"]

    def merchant_queryset(self):
        return product_list_for_merchant(merchant_id=self.merchant_id)

    def create(self, request: Request) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        product = product_create(
            merchant_id=self.merchant_id, fields=serializer.validated_data, actor=actor_of(request)
        )
        return Response(self._shown(product.pk), status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        product = self.get_object()
        serializer = self.get_serializer(product, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        product_update(
            merchant_id=self.merchant_id,
            product_id=product.pk,
            changes=serializer.validated_data,
            actor=actor_of(request),
        )
        return Response(self._shown(product.pk))

    @extend_schema(request=None, responses=ProductSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str) -> Response:
        """Take the product off sale (kept for its orders; its unsold codes stay)."""
        product = self.get_object()
        product_retire(merchant_id=self.merchant_id, product_id=product.pk, actor=actor_of(request))
        return Response(self._shown(product.pk))

    @extend_schema(request=StockUploadSerializer, responses={201: StockReportSerializer})
    @action(detail=True, methods=["post"])
    def stock(self, request: Request, pk: str) -> Response:
        """Add card secrets, one per line, with the admin's dedupe report."""
        product = self.get_object()
        upload = StockUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        report = card_secrets_import(product_id=product.pk, text=upload.validated_data["codes"])
        return Response(StockReportSerializer(report).data, status=status.HTTP_201_CREATED)

    def _shown(self, product_id: int) -> dict:
        product = self.get_queryset().get(pk=product_id)
        return self.get_serializer(product).data


@extend_schema(parameters=[OrderListFilters])
class OrderViewSet(MerchantApiView, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = OrderSerializer
    lookup_field = "order_no"
    lookup_url_kwarg = "id"
    lookup_value_regex = r"[A-Za-z0-9]{1,32}"
    http_method_names = ["get", "post"]
    query_params_read = {"list": {"limit", "cursor", *OrderListFilters().fields}}
    action_scopes = {"secrets": "secrets", "refund": "refunds"}

    def merchant_queryset(self):
        filters = {}
        if self.action == "list":
            # A plain dict: from a QueryDict DRF would read "state=" as no filter at all.
            given = OrderListFilters(data=self.request.query_params.dict())
            given.is_valid(raise_exception=True)
            filters = given.validated_data
        return order_list_for_merchant(merchant_id=self.merchant_id, **filters)

    @extend_schema(request=OrderCreateSerializer, responses={201: OrderSerializer})
    def create(self, request: Request) -> Response:
        """An order for a buyer of your own site; send the buyer to its `pay_url`. Risk decides as at checkout:
        a challenged order answers 409 `challenge_required` with the `confirm_url` to send the buyer to instead."""
        given = OrderCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        order = order_create_for_merchant(
            merchant_id=self.merchant_id,
            product_id=data["product"],
            quantity=data["quantity"],
            email=data["email"],
            buyer_ip=data.get("buyer_ip"),
            custom_input=data.get("custom_input"),
            language=data.get("language", ""),
            coupon_code=data.get("coupon", ""),
        )
        return Response(self.get_serializer(order).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=OrderSecretsSerializer)
    @action(detail=True, methods=["get"])
    def secrets(self, request: Request, id: str) -> Response:
        """The delivered codes, for your site to show your buyer. Needs the `secrets` scope; every read is audited."""
        order = self.get_object()
        codes = order_secrets_for_merchant(
            merchant_id=self.merchant_id, order_no=order.order_no, actor=actor_of(request)
        )
        response = Response({"order": order.order_no, "state": order.state, "secrets": codes})
        response["Cache-Control"] = "no-store"  # card secrets: no proxy or client cache may keep them
        return response

    @extend_schema(request=RefundRequestSerializer, responses={202: RefundSerializer})
    @action(detail=True, methods=["post"])
    def refund(self, request: Request, id: str) -> Response:
        """Refund a paid order through the channel that took the money (scope `refunds`): in full, or `amount` of
        it. The answer is 202: the refund is asked for; a whole refund makes the order `refunded` when the channel
        confirms it, a part leaves the order as it is. Asking again while it runs returns the same refund."""
        order = self.get_object()
        given = RefundRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        amount = given.validated_data.get("amount")
        if amount is not None and amount["currency"] != order.currency:
            raise ValidationError({"amount": [_("The amount must be in the order's currency.")]})
        refund = order_refund_request(
            order_no=order.order_no,
            actor=actor_of(request),
            reason=given.validated_data.get("reason", ""),
            amount_minor=None if amount is None else amount["price_minor"],
        )
        return Response(RefundSerializer(refund).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=OrderSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, id: str) -> Response:
        """Cancel an order still waiting for payment: its stock goes back, its open payments are closed."""
        order = self.get_object()
        cancelled = order_cancel(order_no=order.order_no, actor=actor_of(request))
        return Response(self.get_serializer(cancelled).data)


class WebhookEndpointViewSet(MerchantApiView, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Where your webhooks go. Each delivery is signed by the Standard Webhooks scheme with the endpoint's secret."""

    serializer_class = WebhookEndpointSerializer
    http_method_names = ["get", "post"]

    def merchant_queryset(self):
        return webhook_endpoints_for_merchant(merchant_id=self.merchant_id)

    @extend_schema(request=WebhookEndpointSerializer, responses={201: WebhookEndpointMadeSerializer})
    def create(self, request: Request) -> Response:
        """A new endpoint: its URL must reach a public address. The answer carries its secret, this once."""
        given = WebhookEndpointSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        made = webhook_endpoint_create(
            merchant_id=self.merchant_id,
            url=given.validated_data["url"],
            description=given.validated_data.get("description", ""),
            event_types=given.validated_data.get("event_types", []),
            actor=actor_of(request),
        )
        return Response(self._made(made), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=WebhookEndpointMadeSerializer)
    @action(detail=True, methods=["post"])
    def rotate_secret(self, request: Request, pk: str) -> Response:
        """A new secret; the old one keeps signing beside it for 24 hours (two signatures in the header)."""
        endpoint = self.get_object()
        made = webhook_endpoint_secret_rotate(
            merchant_id=self.merchant_id, endpoint_id=endpoint.pk, actor=actor_of(request)
        )
        return Response(self._made(made))

    @extend_schema(request=None, responses=WebhookEndpointSerializer)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str) -> Response:
        endpoint = self.get_object()
        webhook_endpoint_disable(
            merchant_id=self.merchant_id,
            endpoint_id=endpoint.pk,
            reason="disabled by the merchant",
            actor=actor_of(request),
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=endpoint.pk)).data)

    @extend_schema(request=None, responses=WebhookEndpointSerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str) -> Response:
        endpoint = self.get_object()
        webhook_endpoint_enable(merchant_id=self.merchant_id, endpoint_id=endpoint.pk, actor=actor_of(request))
        return Response(self.get_serializer(self.get_queryset().get(pk=endpoint.pk)).data)

    def _made(self, made) -> dict:
        return WebhookEndpointMadeSerializer(made.endpoint).data | {"secret": made.secret}


class EventViewSet(MerchantApiView, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Every event of your orders, newest first, as the webhooks carried them (also when no endpoint listened)."""

    serializer_class = WebhookEventSerializer
    lookup_field = "event_id"
    lookup_url_kwarg = "id"
    lookup_value_regex = r"evt_[0-9a-f]{1,32}"
    query_params_read = {"list": {"limit", "cursor", "type"}}

    def merchant_queryset(self):
        kind = ""
        if self.action == "list":
            given = EventListFilters(data=self.request.query_params.dict())
            given.is_valid(raise_exception=True)
            kind = given.validated_data.get("type", "")
        return webhook_events_for_merchant(merchant_id=self.merchant_id, type=kind)

    @extend_schema(parameters=[EventListFilters])
    def list(self, request: Request, *args, **kwargs) -> Response:
        return super().list(request, *args, **kwargs)


class SettlementReadView(MerchantApiView):
    """A read of settlement's (through its facade, which returns no querysets): keyset pages, no model."""

    pagination_class = KeysetNewestFirst

    def get_queryset(self):  # pragma: no cover - nothing here reads a queryset
        raise NotImplementedError

    def _filters(self, serializer_class) -> dict:
        given = serializer_class(data=self.request.query_params.dict())
        given.is_valid(raise_exception=True)
        return given.validated_data


@extend_schema_view(list=extend_schema(responses=BalanceListSerializer))
class BalanceViewSet(SettlementReadView):
    """Your money, one entry per currency you have any in."""

    serializer_class = BalanceSerializer
    pagination_class = None  # a few currencies at most
    schema = WholeListSchema()
    query_params_read = {"list": set()}

    def list(self, request: Request) -> Response:
        views = settlement.merchant_money(merchant_id=self.merchant_id)
        return Response({"object": "list", "data": BalanceSerializer(views, many=True).data})


@extend_schema_view(list=extend_schema(parameters=[StatementFilters]))
class BalanceTransactionViewSet(SettlementReadView):
    """Every movement of your money in the ledger, newest first: what each sale, release, refund and payout booked
    on your accounts."""

    serializer_class = StatementLineSerializer
    query_params_read = {"list": {"limit", "cursor", *StatementFilters().fields}}

    def list(self, request: Request) -> Response:
        filters = self._filters(StatementFilters)
        lines = self.paginator.page_of(
            request,
            partial(
                settlement.merchant_statement,
                merchant_id=self.merchant_id,
                currency=filters.get("currency", ""),
                account_kind=filters.get("account", ""),
            ),
            key=lambda line: line.line_id,
        )
        return self.paginator.get_paginated_response(StatementLineSerializer(lines, many=True).data)


@extend_schema_view(
    list=extend_schema(parameters=[PayoutFilters]),
    retrieve=extend_schema(
        description="One of your payouts.", parameters=[OpenApiParameter("id", str, OpenApiParameter.PATH)]
    ),
)
class PayoutViewSet(SettlementReadView):
    """Your payouts, newest first (scope `payouts`)."""

    serializer_class = PayoutSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = r"PO[0-9]{1,30}"
    query_params_read = {"list": {"limit", "cursor", *PayoutFilters().fields}}
    action_scopes = {"list": "payouts", "retrieve": "payouts"}

    def list(self, request: Request) -> Response:
        filters = self._filters(PayoutFilters)
        payouts = self.paginator.page_of(
            request,
            partial(settlement.merchant_payouts, merchant_id=self.merchant_id, state=filters.get("state", "")),
            key=lambda payout: payout.payout_id,
        )
        return self.paginator.get_paginated_response(PayoutSerializer(payouts, many=True).data)

    def retrieve(self, request: Request, id: str) -> Response:
        payout = settlement.merchant_payout(merchant_id=self.merchant_id, payout_no=id)
        if payout is None:
            raise NotFound
        return Response(PayoutSerializer(payout).data)


@extend_schema_view(
    retrieve=extend_schema(responses=CouponSerializer), list=extend_schema(responses=CouponSerializer(many=True))
)
class CouponViewSet(MerchantApiView, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Your coupons, newest first."""

    serializer_class = CouponSerializer
    http_method_names = ["get", "post"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Coupon.objects.none()
        return self.merchant_queryset()

    def merchant_queryset(self):
        return coupons_for_merchant(merchant_id=self.merchant_id)

    @extend_schema(request=CouponSerializer, responses={201: CouponSerializer})
    def create(self, request: Request) -> Response:
        given = CouponSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        coupon = coupon_create(merchant_id=self.merchant_id, fields=given.validated_fields(), actor=actor_of(request))
        return Response(CouponSerializer(coupon).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=CouponSerializer)
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, pk: str) -> Response:
        """Switch it off: no new order may use it; orders holding it keep their discount."""
        coupon = self.get_object()
        done = coupon_deactivate(merchant_id=self.merchant_id, coupon_id=coupon.pk, actor=actor_of(request))
        return Response(CouponSerializer(done).data)
