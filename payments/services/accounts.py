"""Channel account set-up (seed, operators' scripts); credentials are stored encrypted."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.db import transaction

from core.audit import audit_record
from payments import gateways
from payments.contracts import ChannelAccountView
from payments.models import ChannelAccount, refund_returns_fee_default
from payments.services import channel_choice


def _view(a: ChannelAccount) -> ChannelAccountView:
    return ChannelAccountView(
        code=a.code, name=a.name, merchant_no=a.merchant_no, base_url=a.base_url, enabled=a.enabled, account_id=a.pk
    )


def channel_account_ensure(
    *, code: str, name: str, merchant_no: str, base_url: str, currency: str, credentials: dict[str, str]
) -> tuple[ChannelAccountView, bool]:
    """The first account of `code`, created with these values if there is none; its base URL is kept current."""
    gateways.base_url_check(code=code, base_url=base_url)
    with transaction.atomic():
        account = ChannelAccount.objects.filter(code=code).order_by("pk").first()
        created = account is None
        if account is None:
            account = ChannelAccount.objects.create(
                code=code,
                name=name,
                merchant_no=merchant_no,
                base_url=base_url,
                currency=currency,
                credentials=json.dumps(credentials),
                refund_returns_fee=refund_returns_fee_default(code),
            )
        elif account.base_url != base_url:
            account.base_url = base_url
            account.save(update_fields=["base_url"])
    channel_choice.cache_clear()  # routing reads accounts through a short per-process cache
    return _view(account), created


def channel_account_configure(
    *,
    code: str,
    name: str,
    merchant_no: str,
    base_url: str,
    currency: str,
    credentials: dict[str, str],
    priority: int = 100,
    fee_rate_bp: int = 0,
    fee_fixed_minor: int = 0,
    min_amount_minor: int | None = None,
    max_amount_minor: int | None = None,
) -> tuple[ChannelAccountView, bool]:
    """Make the first account of `code` hold exactly these values (created if missing): the demo points its
    accounts at simulators whose keys are the truth. Returns (account, created)."""
    gateways.base_url_check(code=code, base_url=base_url)
    with transaction.atomic():
        account = ChannelAccount.objects.select_for_update().filter(code=code).order_by("pk").first()
        if account is None:
            account = ChannelAccount(code=code, refund_returns_fee=refund_returns_fee_default(code))
        created = account.pk is None
        account.name, account.merchant_no, account.base_url, account.currency = name, merchant_no, base_url, currency
        account.priority = priority
        account.fee_rate_bp, account.fee_fixed_minor = fee_rate_bp, fee_fixed_minor
        account.min_amount_minor, account.max_amount_minor = min_amount_minor, max_amount_minor
        account.credentials = json.dumps(credentials)
        account.save()
    channel_choice.cache_clear()
    return _view(account), created


def channel_account_save(*, account: ChannelAccount, changed: list[str], actor: str) -> ChannelAccount:
    """An operator adds or edits an account in the admin: saved and audited together. The trail names the
    fields that changed, never their values when they are credentials.

    The gateway must be one of the channel's hosts, and moving an account to another gateway (or channel)
    takes the credentials typed again in the same change: the stored ones were never meant for that host.
    Raises ValidationError and saves nothing otherwise."""
    created = account.pk is None
    gateways.base_url_check(code=account.code, base_url=account.base_url)
    with transaction.atomic():
        before = (
            None
            if created
            else ChannelAccount.objects.select_for_update().values("base_url", "code").get(pk=account.pk)
        )
        moved = before is not None and (before["base_url"], before["code"]) != (account.base_url, account.code)
        if moved and "credentials" not in changed:
            raise ValidationError(
                {"credentials": "Changing the gateway or channel requires entering the credentials again."}
            )
        account.save()
        audit_record(
            actor=actor,
            action="channel_account.add" if created else "channel_account.edit",
            target=f"channelaccount:{account.pk}",
            changed=sorted(changed),
            base_url=account.base_url,
            **({"previous_base_url": before["base_url"]} if moved else {}),
        )
    channel_choice.cache_clear()
    return account


def channel_account_fee_learned(*, account_id: int, rate_bp: int, actor: str, evidence: str) -> bool:
    """Reconciliation found the provider charging `rate_bp`: routing weighs that from now on (audited). Only
    for an account with no fixed fee, where one rate says it all. True when the rate changed."""
    with transaction.atomic():
        account = ChannelAccount.objects.select_for_update().get(pk=account_id)
        if account.fee_fixed_minor or account.fee_rate_bp == rate_bp or not 0 <= rate_bp <= 10000:
            return False
        old = account.fee_rate_bp
        account.fee_rate_bp = rate_bp
        account.save(update_fields=["fee_rate_bp"])
        audit_record(
            actor=actor,
            action="channel_account.fee_learned",
            target=f"channelaccount:{account.pk}",
            old_rate_bp=old,
            rate_bp=rate_bp,
            evidence=evidence,
        )
    channel_choice.cache_clear()
    return True
