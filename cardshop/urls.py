from django.contrib import admin
from django.urls import include, path

from cardshop.views import challenge, console, errors, health, images, notify, pay, storefront

urlpatterns = [
    path("", storefront.catalog, name="catalog"),
    path("s/<slug:slug>/", storefront.merchant_shop, name="merchant_shop"),
    path("p/<slug:slug>/", storefront.product_detail, name="product_detail"),
    path("p/<slug:slug>/image.jpg", images.product_image, name="product_image"),
    path("p/<slug:slug>/thumb.jpg", images.product_thumb, name="product_thumb"),
    path("checkout/confirm/<str:token>/", challenge.checkout_confirm, name="checkout_confirm"),
    path(
        "checkout/confirm/<str:token>/captcha.png", challenge.checkout_confirm_captcha, name="checkout_confirm_captcha"
    ),
    path("orders/lookup/", storefront.order_lookup, name="order_lookup"),
    path("orders/<str:order_no>/", storefront.order_detail, name="order_detail"),
    path("orders/<str:order_no>/pay/", pay.order_pay, name="order_pay"),
    path("orders/<str:order_no>/pay/qr.png", pay.order_pay_qr, name="order_pay_qr"),
    path("orders/<str:order_no>/pay/switch/", pay.order_pay_switch, name="order_pay_switch"),
    path("orders/<str:order_no>/codes.txt", storefront.order_codes_txt, name="order_codes_txt"),
    path("orders/<str:order_no>/status/", storefront.order_status, name="order_status"),
    path("orders/<str:order_no>/cancel/", storefront.order_cancel, name="order_cancel"),
    path("notify/<slug:channel_code>/", notify.provider_notify, name="notify"),
    path("favicon.ico", storefront.favicon, name="favicon"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("merchant/", console.console_home, name="console_home"),
    path("merchant/login/", console.console_login, name="console_login"),
    path("merchant/logout/", console.console_logout, name="console_logout"),
    path("merchant/orders/", console.console_orders, name="console_orders"),
    path("merchant/payouts/", console.console_payouts, name="console_payouts"),
    path("merchant/keys/", console.console_keys, name="console_keys"),
    path("merchant/keys/<int:key_id>/revoke/", console.console_key_revoke, name="console_key_revoke"),
    path("merchant/webhooks/", console.console_webhooks, name="console_webhooks"),
    path("merchant/webhooks/<int:endpoint_id>/switch/", console.console_webhook_switch, name="console_webhook_switch"),
    path("merchant/alerts/", console.console_alerts, name="console_alerts"),
    path("merchant/coupons/", console.console_coupons, name="console_coupons"),
    path(
        "merchant/coupons/<int:coupon_id>/deactivate/",
        console.console_coupon_deactivate,
        name="console_coupon_deactivate",
    ),
    path("admin/", admin.site.urls),
    path("api/", include("cardshop.api.urls")),
]

handler404 = errors.page_not_found
handler500 = errors.server_error
