"""Bank gateway callback signature: hex HMAC-SHA256 with the account's notify_key over the sorted non-empty
`k=v` pairs (everything except `signature`) joined by `&`. A Statement answer's list of entries is signed as one
field, `entries`, whose value is `entries_digest` of them (bank.wsdl's header comment)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

UNSIGNED = frozenset({"signature"})


def signing_string(params: Mapping[str, str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in UNSIGNED and params[k] != "")


def sign(params: Mapping[str, str], key: str) -> str:
    if not key:
        raise ValueError("a notify key must not be empty")
    return hmac.new(key.encode(), signing_string(params).encode(), hashlib.sha256).hexdigest()


def verify(params: Mapping[str, str], key: str) -> bool:
    given = params.get("signature", "")
    if not key or not given:
        return False
    return hmac.compare_digest(sign(params, key).encode(), given.lower().encode())


def entries_digest(entries: Iterable[Mapping[str, str]]) -> str:
    """Hex SHA-256 of each entry's signing string followed by a line feed, in document order."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(signing_string(entry).encode())
        digest.update(b"\n")
    return digest.hexdigest()
