"""Hashers for per-order query passwords.

A query password guards one order, and guessing it online is capped by the lookup's per-IP and per-order
rate limits (CARDSHOP_LOOKUP_RATE_IP, CARDSHOP_LOOKUP_RATE_ORDER), whatever the hash. The hash matters only
once a copy of the database is out. Against that, a slow hash buys little here: buyers pick short codes, and
a 6-digit one under the 12,000 PBKDF2 rounds we used is 1.2e10 SHA-256 runs, about a second on one GPU, while
it cost every checkout 3-5 ms of CPU. The keyed hash instead needs a key that is not in the database (derived
from CARDSHOP_HASH_KEY, which lives in the environment beside the card-secret keys): a stolen database or
backup alone cannot test a single guess. It costs microseconds. Each hash still has its own salt, so equal
passwords never look equal. Orders hashed before keep verifying with the PBKDF2 hasher below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from django.conf import settings
from django.contrib.auth.hashers import BasePasswordHasher, PBKDF2PasswordHasher, mask_hash
from django.utils.translation import gettext_noop as _

QUERY_PASSWORD_HASHER = "hmac_sha256_query"  # noqa: S105 (a hasher name, not a password)


class KeyedQueryPasswordHasher(BasePasswordHasher):
    """HMAC-SHA256 of salt and password under a key derived from CARDSHOP_HASH_KEY: ``hmac_sha256_query$salt$mac``."""

    algorithm = QUERY_PASSWORD_HASHER

    @staticmethod
    def _key() -> bytes:
        # Its own key, so a query-password MAC never equals another keyed hash made from CARDSHOP_HASH_KEY.
        return hmac.new(settings.CARDSHOP_HASH_KEY.encode(), b"query-password", hashlib.sha256).digest()

    def encode(self, password: str, salt: str) -> str:
        self._check_encode_args(password, salt)
        mac = hmac.new(self._key(), f"{salt}\x00{password}".encode(), hashlib.sha256).digest()
        return f"{self.algorithm}${salt}${base64.b64encode(mac).decode('ascii').strip()}"

    def decode(self, encoded: str) -> dict:
        algorithm, salt, mac = encoded.split("$", 2)
        if algorithm != self.algorithm:
            raise ValueError(algorithm)
        return {"algorithm": algorithm, "hash": mac, "salt": salt}

    def verify(self, password: str, encoded: str) -> bool:
        salt = self.decode(encoded)["salt"]
        return hmac.compare_digest(encoded.encode(), self.encode(password, salt).encode())

    def safe_summary(self, encoded: str) -> dict:
        decoded = self.decode(encoded)
        return {_("algorithm"): decoded["algorithm"], _("salt"): mask_hash(decoded["salt"]), _("hash"): "********"}

    def must_update(self, encoded: str) -> bool:
        return False

    def harden_runtime(self, password: str, encoded: str) -> None:
        pass  # one HMAC whatever the input: nothing to even out


class QueryPasswordHasher(PBKDF2PasswordHasher):
    """The hasher of orders placed before the keyed one: still verifies their query passwords."""

    algorithm = "pbkdf2_sha256_query"
    iterations = 12_000
