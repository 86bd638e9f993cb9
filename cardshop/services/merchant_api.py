"""The merchant API's own use cases: making, checking and revoking API keys, and idempotent POSTs."""

from __future__ import annotations

import hashlib
import json
import secrets
import string
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from cardshop.models.merchant_api import ApiKey, ApiKeyMode, ApiScope, IdempotencyRecord, IdempotencyState
from core.audit import audit_record
from core.crypto import constant_time_equals, keyed_hash
from core.errors import DomainError
from core.models import Merchant

# ck_live_ + 8 characters of lookup + 32 of secret: 62**32 (190 bits) cannot be guessed, so a fast keyed hash is
# enough to keep at rest (a slow password hash protects low-entropy secrets, and would cost every API request).
_ALPHABET = string.ascii_letters + string.digits
_LOOKUP, _SECRET = 8, 32
IDEMPOTENCY_HOURS = 24
_TOUCH_SECONDS = 60  # last_used_at is written at most this often per key and process


def _key_hash(token: str) -> str:
    return keyed_hash(token, purpose="api_key")


@dataclass(frozen=True)
class ApiKeyMade:
    key: ApiKey
    token: str  # the whole key: shown once, never stored


def api_key_create(
    *, merchant_id: int, name: str, scopes: list[str], mode: str = ApiKeyMode.LIVE, actor: str
) -> ApiKeyMade:
    """A new key for the merchant with these scopes; the caller shows `token` once."""
    unknown = set(scopes) - set(ApiScope.values)
    if not scopes or unknown:
        raise DomainError("invalid_scopes", _("Choose at least one scope among: %s.") % ", ".join(ApiScope.values))
    if mode not in ApiKeyMode.values:
        raise DomainError("invalid_mode", _("Unknown key mode."))
    prefix = f"ck_{mode}_" + "".join(secrets.choice(_ALPHABET) for _i in range(_LOOKUP))
    token = prefix + "".join(secrets.choice(_ALPHABET) for _i in range(_SECRET))
    with transaction.atomic(durable=True):
        if not Merchant.objects.filter(pk=merchant_id).exists():
            raise DomainError("not_found", _("No such merchant."))
        key = ApiKey.objects.create(
            merchant_id=merchant_id,
            name=name[:80],
            mode=mode,
            prefix=prefix,
            secret_hash=_key_hash(token),
            last4=token[-4:],
            scopes=sorted(set(scopes)),
            created_by=actor[:150],
        )
        audit_record(actor=actor, action="api_key_created", target=f"api_key:{key.pk}", scopes=key.scopes)
    return ApiKeyMade(key=key, token=token)


def api_key_revoke(*, key_id: int, actor: str, merchant_id: int | None = None) -> ApiKey:
    """Revoke a key at once (every later request with it is refused); revoking twice changes nothing. Given a
    merchant (its console), only that merchant's keys: another's is "not found"."""
    with transaction.atomic(durable=True):
        keys = ApiKey.objects.select_for_update()
        if merchant_id is not None:
            keys = keys.filter(merchant_id=merchant_id)
        key = keys.filter(pk=key_id).first()
        if key is None:
            raise DomainError("not_found", _("No such API key."))
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            audit_record(actor=actor, action="api_key_revoked", target=f"api_key:{key.pk}")
    return key


_touched: dict[int, float] = {}


def api_key_authenticate(*, token: str) -> ApiKey | None:
    """The active key this token is (of an active merchant), or None. Compared by keyed hash in constant time."""
    if len(token) != len("ck_live_") + _LOOKUP + _SECRET or not token.startswith(("ck_live_", "ck_test_")):
        return None
    # A merchant switched off in the admin is shut out of the API with all its keys.
    key = ApiKey.objects.filter(prefix=token[:-_SECRET], revoked_at__isnull=True, merchant__is_active=True).first()
    if key is None or not constant_time_equals(key.secret_hash, _key_hash(token)):
        return None
    now = time.monotonic()
    if now - _touched.get(key.pk, -_TOUCH_SECONDS) >= _TOUCH_SECONDS:
        _touched[key.pk] = now
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return key


# --- Idempotency-Key ---------------------------------------------------------------------------------------------


class IdempotencyConflict(DomainError):
    """The key is in use by a request still running, or was used for a different request."""


@dataclass(frozen=True)
class IdempotentAnswer:
    status_code: int
    body: object


def request_fingerprint(*, method: str, path: str, data: object) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method}\n{path}\n{canonical}".encode()).hexdigest()


def idempotency_claim(*, merchant_id: int, key: str, fingerprint: str) -> IdempotencyRecord | IdempotentAnswer:
    """Claim `key` for this request (the record to finish once answered), or the answer kept for it.

    The claim commits on its own before the request runs: a concurrent duplicate finds it and is refused with 409
    instead of running twice. A request that died between its effect and its answer leaves the claim unanswered:
    the key then answers 409 until it is swept, which may make a merchant look, never makes a second order."""
    if not key or len(key) > 255:
        raise DomainError("idempotency_key_invalid", _("Idempotency-Key must be 1 to 255 characters."))
    try:
        with transaction.atomic(durable=True):
            return IdempotencyRecord.objects.create(merchant_id=merchant_id, key=key, fingerprint=fingerprint)
    except IntegrityError:
        pass
    kept = IdempotencyRecord.objects.get(merchant_id=merchant_id, key=key)
    if kept.fingerprint != fingerprint:
        raise IdempotencyConflict(
            "idempotency_key_reused",
            _("This Idempotency-Key was used for a different request: use a new key for a new request."),
        )
    if kept.state != IdempotencyState.DONE:
        raise IdempotencyConflict(
            "idempotency_key_in_use", _("A request with this Idempotency-Key is still running: retry in a moment.")
        )
    return IdempotentAnswer(status_code=kept.status_code, body=kept.body)


def idempotency_finish(*, record: IdempotencyRecord, status_code: int, body: object) -> None:
    """Keep the answer for retries. A server error kept nothing done (its transaction rolled back), so its claim is
    dropped and a retry runs again."""
    if status_code >= 500:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyState.DONE, status_code=status_code, body=body
    )


def idempotency_records_sweep(*, now=None) -> int:
    """Forget keys older than 24 hours (the merchant may then reuse them)."""
    cutoff = (now or timezone.now()) - timedelta(hours=IDEMPOTENCY_HOURS)
    deleted, _rows = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
