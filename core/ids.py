"""Identifiers that leave the system (order numbers, out_trade_no): unique, unguessable, sortable by time."""

import secrets

from django.utils import timezone


def order_no() -> str:
    # 14 digits of time + 8 random digits: cannot be enumerated, still readable over the phone.
    return timezone.localtime().strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10**8):08d}"


def out_trade_no(prefix: str = "P") -> str:
    return prefix + timezone.localtime().strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10**10):010d}"
