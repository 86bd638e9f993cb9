"""Seed a demo shop through the services: a merchant, products with card secrets, the epay channel
pointed at the loopback simulator, and an operator. Keys and passwords are generated here and printed once."""

from __future__ import annotations

import json
import secrets
import string

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from cardshop.models import DeliveryKind, Product
from cardshop.services.stock import card_secrets_import
from core.models import Merchant
from payments import facade as payments


def _code(groups: int = 4, size: int = 4) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "-".join("".join(secrets.choice(alphabet) for _ in range(size)) for _ in range(groups))


PRODUCTS = [
    # slug, name, price_minor, kind, stock, description
    ("steam-10", "Steam Wallet ¥10 code", 990, DeliveryKind.UNIQUE, 30, "A ¥10 wallet code, delivered instantly."),
    ("office-key", "Office suite licence key", 2900, DeliveryKind.UNIQUE, 12, "One retail licence key per unit."),
    ("vpn-30d", "VPN 30-day gift code", 1500, DeliveryKind.UNIQUE, 3, "Only a few left: try buying them all."),
    ("photo-kit", "Photo preset pack (download)", 500, DeliveryKind.REUSABLE, 0, "Same download link for everyone."),
    ("game-topup", "Game top-up (manual)", 5000, DeliveryKind.MANUAL, 0, "The seller tops up the account you name."),
]


class Command(BaseCommand):
    help = "Create the demo shop (idempotent). Prints generated credentials the first time."

    def add_arguments(self, parser):
        parser.add_argument("--epay-url", default="http://127.0.0.1:8001")
        parser.add_argument("--merchants-file", default=str(settings.VAR_DIR / "epay-merchants.json"))

    def handle(self, *args, epay_url: str, merchants_file: str, **options):
        merchant, _ = Merchant.objects.get_or_create(slug="demo", defaults={"name": "Demo Shop"})
        account, created = payments.channel_account_ensure(
            code="epay",
            name="易支付 (demo simulator)",
            merchant_no=str(1000 + secrets.randbelow(9000)),
            base_url=epay_url,
            currency="CNY",
            credentials={"key": secrets.token_hex(16)},
        )
        with open(merchants_file, "w") as fh:  # the simulator reads the same pid/key pair
            json.dump({account.merchant_no: payments.channel_account_credentials(code="epay")["key"]}, fh)
        for i, (slug, name, price, kind, stock, desc) in enumerate(PRODUCTS):
            product, created = Product.objects.get_or_create(
                slug=slug,
                defaults={
                    "merchant": merchant,
                    "name": name,
                    "price_minor": price,
                    "currency": "CNY",
                    "delivery_kind": kind,
                    "description": desc,
                    "sort_order": i,
                    "max_quantity": 5,
                    "reusable_secret": f"https://downloads.cardshop.local/{secrets.token_urlsafe(12)}"
                    if kind == DeliveryKind.REUSABLE
                    else "",
                    "custom_fields": [{"name": "account", "label": "Game account", "required": True}]
                    if kind == DeliveryKind.MANUAL
                    else [],
                },
            )
            if created and stock:
                card_secrets_import(product_id=product.pk, text="\n".join(_code() for _ in range(stock)))
        user_model = get_user_model()
        if not user_model.objects.filter(username="operator").exists():
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser("operator", "operator@cardshop.local", password)
            self.stdout.write(self.style.SUCCESS(f"Operator login: operator / {password}  (shown once)"))
        else:
            self.stdout.write("Operator login: operator (password was printed when first seeded)")
        if created:
            key = payments.channel_account_credentials(code="epay")["key"]
            self.stdout.write(self.style.SUCCESS(f"epay channel: pid {account.merchant_no}, key {key}  (shown once)"))
        self.stdout.write(f"epay channel: pid {account.merchant_no} -> {account.base_url}")
