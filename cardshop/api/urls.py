"""/api/v1/ and the API's schema and docs (served from this server: no CDN)."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from cardshop.api import views

router = SimpleRouter(trailing_slash=True)
router.register("products", views.ProductViewSet, basename="api-product")
router.register("orders", views.OrderViewSet, basename="api-order")
router.register("webhook_endpoints", views.WebhookEndpointViewSet, basename="api-webhook-endpoint")
router.register("events", views.EventViewSet, basename="api-event")
router.register("balances", views.BalanceViewSet, basename="api-balance")
router.register("balance_transactions", views.BalanceTransactionViewSet, basename="api-balance-transaction")
router.register("payouts", views.PayoutViewSet, basename="api-payout")
router.register("coupons", views.CouponViewSet, basename="api-coupon")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
