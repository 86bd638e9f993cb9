"""Card secret stock: bulk import (encrypted, deduplicated across the merchant's products, uploads decoded
as UTF-8 or GB18030) and the audited withdrawal of an unsold secret."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from cardshop.locks import merchant_stock_lock, product_qs_locked
from cardshop.models import CardSecret, DeliveryKind, SecretStatus
from core.audit import audit_record
from core.crypto import keyed_hash
from core.errors import DomainError

MAX_SECRET_LENGTH = 1000
WITHDRAW_REASON_MAX = 200

# Tried in order. GB18030 is a superset of GBK and GB2312, the encodings Chinese suppliers' exports use.
UPLOAD_ENCODINGS = ("utf-8", "gb18030")


@dataclass(frozen=True)
class ImportResult:
    imported: int
    duplicates: int  # skipped: repeated in the batch, already in this product, or in another of the merchant's
    invalid: int
    duplicates_elsewhere: int = 0  # of `duplicates`: already in another product of the same merchant
    encoding: str = ""  # how the uploaded file was read ("" when only pasted text was imported)


def card_secret_hash(product_id: int, secret: str) -> str:
    return keyed_hash(f"{product_id}:{secret}", purpose="card_secret")


def card_secret_merchant_hash(merchant_id: int, secret: str) -> str:
    return keyed_hash(f"{merchant_id}:{secret}", purpose="card_secret_merchant")


def card_secrets_decode(data: bytes) -> tuple[str, str]:
    """Uploaded bytes as text and the encoding used: UTF-8 (a BOM is dropped), else GB18030.

    Refuses what neither decodes, rather than storing replacement characters a buyer could never redeem.
    """
    for encoding in UPLOAD_ENCODINGS:
        try:
            return data.decode("utf-8-sig" if encoding == "utf-8" else encoding), encoding
        except UnicodeDecodeError:
            continue
    raise DomainError("undecodable", _("The file is neither UTF-8 nor GB18030/GBK text."))


def _valid(line: str) -> bool:
    return 0 < len(line) <= MAX_SECRET_LENGTH and line.isprintable()


def card_secrets_import(*, product_id: int, text: str = "", upload: bytes | None = None) -> ImportResult:
    """One secret per line, from pasted `text` and/or an uploaded file's bytes; blank lines are ignored,
    overlong or non-printable lines are invalid. A secret already held by any product of the same merchant
    (sold, unsold or withdrawn) is a duplicate and skipped."""
    encoding = ""
    if upload:
        decoded, encoding = card_secrets_decode(upload)
        text = f"{text}\n{decoded}" if text else decoded
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    invalid = sum(1 for line in lines if not _valid(line))
    with transaction.atomic(durable=True):
        product = product_qs_locked().get(pk=product_id)
        if product.delivery_kind != DeliveryKind.UNIQUE:
            raise DomainError("not_unique_stock", "only unique-secret products hold card secrets")
        # Serialises imports into all of this merchant's products, so the duplicate checks below are exact.
        merchant_stock_lock(product.merchant_id)
        batch: dict[str, tuple[str, str]] = {}  # merchant hash -> (product hash, secret)
        duplicates = 0
        for line in filter(_valid, lines):
            mh = card_secret_merchant_hash(product.merchant_id, line)
            if mh in batch:
                duplicates += 1
            else:
                batch[mh] = (card_secret_hash(product.pk, line), line)
        here: set[str] = set()
        elsewhere: set[str] = set()
        merchant_hashes = list(batch)
        for i in range(0, len(merchant_hashes), 1000):
            chunk = merchant_hashes[i : i + 1000]
            rows = CardSecret.objects.filter(product__merchant_id=product.merchant_id, merchant_hash__in=chunk)
            for mh, pid in rows.values_list("merchant_hash", "product_id"):
                (here if pid == product.pk else elsewhere).add(mh)
            # Rows imported before merchant hashes existed are still found in this product by the old hash.
            by_product_hash = {batch[mh][0]: mh for mh in chunk}
            legacy = CardSecret.objects.filter(product=product, secret_hash__in=list(by_product_hash))
            here.update(by_product_hash[h] for h in legacy.values_list("secret_hash", flat=True))
        elsewhere -= here
        known = here | elsewhere
        duplicates += len(known)
        CardSecret.objects.bulk_create(
            [
                CardSecret(product=product, secret=s, secret_hash=ph, merchant_hash=mh)
                for mh, (ph, s) in batch.items()
                if mh not in known
            ],
            batch_size=500,
        )
        if len(batch) > len(known) and product.low_stock_announced_at is not None:
            product.low_stock_announced_at = None  # stocked again: running low is news again
            product.save(update_fields=["low_stock_announced_at"])
    return ImportResult(
        imported=len(batch) - len(known),
        duplicates=duplicates,
        invalid=invalid,
        duplicates_elsewhere=len(elsewhere),
        encoding=encoding,
    )


def secret_withdraw(*, secret_id: int, reason: str, actor: str) -> CardSecret:
    """Take an unsold secret (leaked, bad) out of stock for good, with a reason, audited.

    A conditional UPDATE on status AVAILABLE: a checkout reserving the same row either got it first (then
    this refuses) or finds it gone; nothing reserved or sold is ever taken from a buyer.
    """
    reason = reason.strip()
    if not reason:
        raise DomainError("withdraw_reason", _("Say why the secret is withdrawn."))
    reason = reason[:WITHDRAW_REASON_MAX]
    now = timezone.now()
    with transaction.atomic(durable=True):
        taken = CardSecret.objects.filter(pk=secret_id, status=SecretStatus.AVAILABLE, order__isnull=True).update(
            status=SecretStatus.WITHDRAWN, withdrawn_at=now, withdraw_reason=reason
        )
        secret = CardSecret.objects.filter(pk=secret_id).only("pk", "product_id", "status", "order_id").first()
        if secret is None:
            raise DomainError("not_found", _("No such card secret."))
        if not taken:
            if secret.status == SecretStatus.WITHDRAWN:
                raise DomainError("already_withdrawn", _("This card secret is already withdrawn."))
            raise DomainError(
                "secret_not_withdrawable",
                _("Only an unsold card secret can be withdrawn; this one is %(status)s.")
                % {"status": secret.get_status_display()},
            )
        audit_record(
            actor=actor,
            action="card_secret_withdraw",
            target=f"cardshop.cardsecret:{secret_id}",
            product_id=secret.product_id,
            reason=reason,
        )
    return secret
