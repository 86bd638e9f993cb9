"""Loaded with -p before Django starts: test keys are generated per run, never constants."""

import base64
import os
import secrets

os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("CARDSHOP_SECRET_KEYS", "t1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
os.environ.setdefault("CARDSHOP_HASH_KEY", secrets.token_urlsafe(32))
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
os.environ.setdefault("CARDSHOP_VAR_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test"))
# Concurrency proofs need one real connection per thread, not a shared pool.
os.environ.setdefault("DATABASE_POOL", "0")
# Every channel account in the tests points at a loopback simulator (tests/operators turns this off to prove
# a typed host is refused).
os.environ.setdefault("CARDSHOP_ALLOW_LOOPBACK_GATEWAYS", "1")
