from cardshop.models.catalog import Category, DeliveryKind, Product, ProductImage, ShopAnnouncement
from cardshop.models.orders import Order, OrderEvent, OrderInReview, OrderState, SecretRevealLog
from cardshop.models.stock import CardSecret, SecretStatus

__all__ = [
    "CardSecret",
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
]
