from cardshop.models.catalog import (
    Category,
    DeliveryKind,
    MerchantShopPage,
    Product,
    ProductImage,
    ShopAnnouncement,
)
from cardshop.models.merchant_alerts import MerchantAlert, MerchantAlertSettings
from cardshop.models.merchant_api import ApiKey, ApiKeyMode, ApiScope, IdempotencyRecord
from cardshop.models.merchant_console import MerchantMember
from cardshop.models.orders import Order, OrderEvent, OrderInReview, OrderState, SecretRevealLog
from cardshop.models.pricing import Coupon, CouponKind
from cardshop.models.stock import CardSecret, SecretStatus
from cardshop.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

__all__ = [
    "ApiKey",
    "ApiKeyMode",
    "ApiScope",
    "IdempotencyRecord",
    "MerchantAlert",
    "MerchantAlertSettings",
    "MerchantMember",
    "MerchantShopPage",
    "CardSecret",
    "Coupon",
    "CouponKind",
    "Category",
    "DeliveryKind",
    "Order",
    "OrderEvent",
    "OrderInReview",
    "OrderState",
    "Product",
    "ProductImage",
    "SecretRevealLog",
    "SecretStatus",
    "ShopAnnouncement",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
