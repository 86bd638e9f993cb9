"""Keys from settings, AEAD encryption with key ids, keyed hashes, HMAC helpers and mask().

Keys are never constants in code: settings load them from the environment (or, with DEBUG on,
from a per-checkout file generated on first run).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

TOKEN_PREFIX = "v1"  # noqa: S105 (format tag, not a secret)


class DecryptionError(Exception):
    pass


@lru_cache(maxsize=1)
def _keyring() -> tuple[str, dict[str, AESGCM]]:
    """(current key id, {key id: cipher}) from settings.CARDSHOP_SECRET_KEYS = "kid:b64key,kid:b64key" (first is current)."""
    spec = settings.CARDSHOP_SECRET_KEYS
    ring: dict[str, AESGCM] = {}
    current = ""
    for item in spec.split(","):
        kid, _, b64 = item.strip().partition(":")
        key = base64.urlsafe_b64decode(b64)
        if len(key) != 32 or not kid:
            raise ValueError("CARDSHOP_SECRET_KEYS entries must be kid:<urlsafe base64 of 32 bytes>")
        ring[kid] = AESGCM(key)
        current = current or kid
    return current, ring


def reset_keyring() -> None:
    _keyring.cache_clear()


def generate_key_spec(kid: str = "k1") -> str:
    return f"{kid}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


def encrypt(plaintext: str, *, context: str) -> str:
    """AES-256-GCM under the current key; `context` is bound as associated data so a ciphertext
    cannot be moved to another field or kind of row."""
    kid, ring = _keyring()
    nonce = os.urandom(12)
    ct = ring[kid].encrypt(nonce, plaintext.encode(), f"{context}:{kid}".encode())
    return f"{TOKEN_PREFIX}:{kid}:{base64.urlsafe_b64encode(nonce + ct).decode()}"


def decrypt(token: str, *, context: str) -> str:
    try:
        prefix, kid, b64 = token.split(":", 2)
        cipher = _keyring()[1][kid]
        blob = base64.urlsafe_b64decode(b64)
        if prefix != TOKEN_PREFIX:
            raise ValueError(prefix)
        return cipher.decrypt(blob[:12], blob[12:], f"{context}:{kid}".encode()).decode()
    except Exception as exc:  # any malformed or foreign token is the same failure to the caller
        raise DecryptionError("cannot decrypt value") from exc


def key_id_of(token: str) -> str:
    return token.split(":", 2)[1]


def keyed_hash(value: str, *, purpose: str) -> str:
    """HMAC-SHA256 with the stable hash key: equality lookups (dedupe) without storing plaintext."""
    key = settings.CARDSHOP_HASH_KEY.encode()
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()


def hmac_sha256_hex(key: str | bytes, message: str | bytes) -> str:
    k = key.encode() if isinstance(key, str) else key
    m = message.encode() if isinstance(message, str) else message
    return hmac.new(k, m, hashlib.sha256).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def mask(value: str | None, *, keep: int = 4) -> str:
    """Show at most the last `keep` characters (none for short values): for logs, admin and API."""
    if not value:
        return ""
    if len(value) <= keep * 2:
        return "*" * 8
    return "*" * 8 + value[-keep:]
