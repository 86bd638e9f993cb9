"""Give an operator a second factor: a TOTP device (printed as an otpauth:// URI and its secret, for any
authenticator app) and a fresh set of one-time recovery codes. Re-running replaces both."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = "Create (or replace) a staff user's TOTP device and recovery codes; prints them once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--codes", type=int, default=10, help="how many recovery codes (default 10)")
        parser.add_argument("--recovery-only", action="store_true", help="keep the TOTP device; new codes only")

    def handle(self, *args, username: str, codes: int, recovery_only: bool, **options):
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {username!r}") from None
        if not user.is_staff:
            raise CommandError(f"{username!r} is not staff")
        with transaction.atomic():
            if not recovery_only:
                TOTPDevice.objects.filter(user=user).delete()
                totp = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
            StaticDevice.objects.filter(user=user).delete()
            static = StaticDevice.objects.create(user=user, name="recovery codes", confirmed=True)
            tokens = [StaticToken.random_token() for _ in range(codes)]
            StaticToken.objects.bulk_create([StaticToken(device=static, token=t) for t in tokens])
        if not recovery_only:
            self.stdout.write("Add this to the operator's authenticator app (scan the URI as a QR, or type the key):")
            self.stdout.write(f"  {totp.config_url}")
            self.stdout.write(f"  key: {_b32(totp.bin_key)}")
        self.stdout.write("Recovery codes (each works once; store them offline):")
        for token in tokens:
            self.stdout.write(f"  {token}")


def _b32(key: bytes) -> str:
    from base64 import b32encode

    return b32encode(key).decode().rstrip("=")
