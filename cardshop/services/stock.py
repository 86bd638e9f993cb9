"""Bulk import of card secrets: encrypted, deduplicated within the batch and against stock."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from cardshop.locks import product_qs_locked
from cardshop.models import CardSecret, DeliveryKind
from core.crypto import keyed_hash
from core.errors import DomainError

MAX_SECRET_LENGTH = 1000


@dataclass(frozen=True)
class ImportResult:
    imported: int
    duplicates: int
    invalid: int


def card_secret_hash(product_id: int, secret: str) -> str:
    return keyed_hash(f"{product_id}:{secret}", purpose="card_secret")


def _valid(line: str) -> bool:
    return 0 < len(line) <= MAX_SECRET_LENGTH and line.isprintable()


def card_secrets_import(*, product_id: int, text: str) -> ImportResult:
    """One secret per line; blank lines are ignored, overlong or non-printable lines are invalid."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    invalid = sum(1 for line in lines if not _valid(line))
    with transaction.atomic(durable=True):
        # Locking the product serialises imports into it, so the duplicate check below is exact.
        product = product_qs_locked().get(pk=product_id)
        if product.delivery_kind != DeliveryKind.UNIQUE:
            raise DomainError("not_unique_stock", "only unique-secret products hold card secrets")
        batch: dict[str, str] = {}
        duplicates = 0
        for line in filter(_valid, lines):
            h = card_secret_hash(product.pk, line)
            if h in batch:
                duplicates += 1
            else:
                batch[h] = line
        existing: set[str] = set()
        hashes = list(batch)
        for i in range(0, len(hashes), 1000):
            existing.update(
                CardSecret.objects.filter(product=product, secret_hash__in=hashes[i : i + 1000]).values_list(
                    "secret_hash", flat=True
                )
            )
        duplicates += len(existing)
        CardSecret.objects.bulk_create(
            [CardSecret(product=product, secret=s, secret_hash=h) for h, s in batch.items() if h not in existing],
            batch_size=500,
        )
    return ImportResult(imported=len(batch) - len(existing), duplicates=duplicates, invalid=invalid)
