from cardshop.models.catalog import DeliveryKind, Product
from cardshop.models.orders import Order, OrderEvent, OrderState, SecretRevealLog
from cardshop.models.stock import CardSecret, SecretStatus

__all__ = [
    "CardSecret",
    "DeliveryKind",
    "Order",
    "OrderEvent",
    "OrderState",
    "Product",
    "SecretRevealLog",
    "SecretStatus",
]
