"""易支付 MD5 signature: sorted non-empty params (without sign/sign_type), `k=v&...`, key appended, lowercase hex."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from core.crypto import constant_time_equals

UNSIGNED = frozenset({"sign", "sign_type"})


def signing_string(params: Mapping[str, str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in UNSIGNED and params[k] != "")


def sign(params: Mapping[str, str], key: str, *, key_separator: str = "") -> str:
    # Most panels append the key bare; some forks use "&key=" (a per-account option).
    if not key:
        raise ValueError("an epay key must not be empty")
    return hashlib.md5((signing_string(params) + key_separator + key).encode()).hexdigest()


def verify(params: Mapping[str, str], key: str, *, key_separator: str = "") -> bool:
    given = params.get("sign", "")
    if not key or not given:
        return False
    return constant_time_equals(sign(params, key, key_separator=key_separator), given.lower())
