"""Hasher for per-order query passwords.

A query password guards one order and sits behind per-IP and per-order rate limits, so it is hashed
with fewer PBKDF2 rounds than an account password: checkout stays in the millisecond range while the
stored value is still a salted slow hash, never plaintext.
"""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class QueryPasswordHasher(PBKDF2PasswordHasher):
    algorithm = "pbkdf2_sha256_query"
    iterations = 12_000
