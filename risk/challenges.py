"""Challenges: the buyer proves something before a checkout it asked for goes on. A six-digit code mailed to the
checkout's email (the mail is the caller's: risk hands back the code once), or an image captcha drawn here by
the `captcha` package. Limited attempts and lifetime; the answer is stored as a keyed hash bound to the token, so
neither the database nor a stolen token tells it. A passed challenge is used once (`challenge_consume`)."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import timedelta

from captcha.image import ImageCaptcha
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.crypto import constant_time_equals, keyed_hash
from risk.models import Challenge, ChallengeKind

ATTEMPTS = 5
CAPTCHA_ALPHABET = "".join(c for c in string.ascii_uppercase + string.digits if c not in "0O1IL")  # no look-alikes
CAPTCHA_LENGTH = 5


def _hash(token: str, answer: str) -> str:
    return keyed_hash(answer.strip().upper(), purpose=f"risk-challenge:{token}")


@dataclass(frozen=True)
class ChallengeStarted:
    token: str
    kind: str
    code: str = ""  # the email code, for the caller to mail; empty for a captcha


@dataclass(frozen=True)
class ChallengeAnswer:
    passed: bool
    attempts_left: int
    expired: bool = False


def challenge_start(*, kind: str, assessment_id: int, payload: dict) -> ChallengeStarted:
    token = secrets.token_urlsafe(32)
    image = b""
    if kind == ChallengeKind.EMAIL_CODE:
        answer = f"{secrets.randbelow(10**6):06d}"
    elif kind == ChallengeKind.CAPTCHA:
        answer = "".join(secrets.choice(CAPTCHA_ALPHABET) for _ in range(CAPTCHA_LENGTH))
        image = ImageCaptcha(width=200, height=70).generate(answer).getvalue()
    else:
        raise ValueError(f"unknown challenge kind {kind!r}")
    Challenge.objects.create(
        token=token,
        kind=kind,
        answer_hash=_hash(token, answer),
        image=image,
        attempts_left=ATTEMPTS,
        payload=payload,
        assessment_id=assessment_id,
        expires_at=timezone.now() + timedelta(seconds=settings.RISK_CHALLENGE_SECONDS),
    )
    return ChallengeStarted(token=token, kind=kind, code=answer if kind == ChallengeKind.EMAIL_CODE else "")


def challenge_image(*, token: str) -> bytes:
    """The captcha's picture (PNG); empty for an unknown, used or expired challenge."""
    found = Challenge.objects.filter(token=token, kind=ChallengeKind.CAPTCHA, consumed_at__isnull=True).first()
    if found is None or found.expires_at <= timezone.now():
        return b""
    return bytes(found.image)


def challenge_kind(*, token: str) -> str:
    """The kind of a live challenge, or empty when the token is unknown, used or expired."""
    found = Challenge.objects.filter(token=token, consumed_at__isnull=True, expires_at__gt=timezone.now()).first()
    return found.kind if found else ""


def challenge_answer(*, token: str, answer: str) -> ChallengeAnswer:
    """Check one answer; each wrong one uses an attempt, and none is left after the last."""
    with transaction.atomic():
        found = Challenge.objects.select_for_update().filter(token=token, consumed_at__isnull=True).first()
        if found is None or found.expires_at <= timezone.now() or found.attempts_left == 0:
            return ChallengeAnswer(passed=False, attempts_left=0, expired=True)
        if found.passed_at is not None:
            return ChallengeAnswer(passed=True, attempts_left=found.attempts_left)
        if constant_time_equals(_hash(token, answer), found.answer_hash):
            found.passed_at = timezone.now()
            found.save(update_fields=["passed_at"])
            return ChallengeAnswer(passed=True, attempts_left=found.attempts_left)
        found.attempts_left -= 1
        found.save(update_fields=["attempts_left"])
        return ChallengeAnswer(passed=False, attempts_left=found.attempts_left)


def challenge_consume(*, token: str) -> dict | None:
    """A passed challenge's checkout payload, once; None otherwise (never passed, used, expired)."""
    with transaction.atomic():
        found = Challenge.objects.select_for_update().filter(token=token, consumed_at__isnull=True).first()
        if found is None or found.passed_at is None or found.expires_at <= timezone.now():
            return None
        found.consumed_at = timezone.now()
        found.save(update_fields=["consumed_at"])
        return found.payload
