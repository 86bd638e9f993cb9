"""Issue 9 point 14 through the admin: withdrawing needs its own permission, asks for a reason, is audited."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from cardshop.models import CardSecret, SecretStatus
from cardshop.services.stock import card_secrets_import
from core.models import AuditEvent
from tests.cardshop.helpers import buy
from tests.conftest import make_product
from tests.operators.auth import operator_login

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/cardshop/cardsecret/"


def staff(client, *codenames: str):
    user = get_user_model().objects.create_user("staff", "s@example.com", "staff-pass-123456", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    operator_login(client, user)
    return user


def choose(client, pks):
    return client.post(CHANGELIST, {"action": "card_secrets_withdraw", "_selected_action": pks, "index": 0})


def apply(client, pks, reason):
    return client.post(
        CHANGELIST,
        {"action": "card_secrets_withdraw", "_selected_action": pks, "apply": "1", "reason": reason},
        follow=True,
    )


def test_an_operator_with_the_permission_withdraws_with_a_reason(client, merchant, epay_account):
    product = make_product(merchant, secrets_count=0)
    card_secrets_import(product_id=product.pk, text="FREE-1\nFREE-2\nHELD-3")
    held = buy(product, qty=1).secrets.get()
    free = list(CardSecret.objects.exclude(pk=held.pk).order_by("pk").values_list("pk", flat=True))
    staff(client, "view_cardsecret", "withdraw_cardsecret")

    page = choose(client, [*free, held.pk])
    assert page.status_code == 200
    assert 'name="reason"' in page.content.decode()
    assert CardSecret.objects.filter(status=SecretStatus.WITHDRAWN).count() == 0
    assert apply(client, free, "").status_code == 200  # no reason: the form asks again, nothing changes
    assert CardSecret.objects.filter(status=SecretStatus.WITHDRAWN).count() == 0

    done = apply(client, [*free, held.pk], "supplier says leaked").content.decode()
    assert "Withdrew 2 secrets." in done
    assert f"#{held.pk}: Only an unsold card secret can be withdrawn" in done
    assert set(CardSecret.objects.filter(pk__in=free).values_list("status", flat=True)) == {SecretStatus.WITHDRAWN}
    held.refresh_from_db()
    assert held.status == SecretStatus.RESERVED
    assert sorted(AuditEvent.objects.values_list("actor", "action", "target")) == sorted(
        ("staff", "card_secret_withdraw", f"cardshop.cardsecret:{pk}") for pk in free
    )


def test_view_only_staff_cannot_withdraw(client, merchant):
    product = make_product(merchant, secrets_count=1)
    secret = CardSecret.objects.get(product=product)
    staff(client, "view_cardsecret")
    assert "card_secrets_withdraw" not in client.get(CHANGELIST).content.decode()
    choose(client, [secret.pk])
    apply(client, [secret.pk], "leaked")
    secret.refresh_from_db()
    assert secret.status == SecretStatus.AVAILABLE
    assert AuditEvent.objects.count() == 0
