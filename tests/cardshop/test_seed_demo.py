"""The demo seed generates its secrets: nothing a forger could read in the source."""

import io
import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from cardshop.models import CardSecret, Product
from payments.models import ChannelAccount

pytestmark = pytest.mark.django_db


def seed(tmp_path):
    out = io.StringIO()
    call_command("seed_demo", epay_url="http://127.0.0.1:8001", merchants_file=str(tmp_path / "m.json"), stdout=out)
    return out.getvalue()


def test_seed_generates_and_prints_keys_once(tmp_path):
    first = seed(tmp_path)
    password = re.search(r"Operator login: operator / (\S+)", first).group(1)
    key = re.search(r"key (\S+)  \(shown once\)", first).group(1)
    assert get_user_model().objects.get(username="operator").check_password(password)
    account = ChannelAccount.objects.get(code="epay")
    assert account.credentials_dict()["key"] == key
    assert json.loads((tmp_path / "m.json").read_text()) == {account.merchant_no: key}
    assert Product.objects.count() == 5
    assert CardSecret.objects.count() == 45
    again = seed(tmp_path)  # idempotent, and secrets are not printed twice
    assert password not in again and key not in again
    assert Product.objects.count() == 5 and CardSecret.objects.count() == 45


def test_two_seeds_share_no_secret(tmp_path):
    first = seed(tmp_path)
    ChannelAccount.objects.all().delete()
    get_user_model().objects.all().delete()
    second = seed(tmp_path)
    pick = re.compile(r"(?:operator / |key )(\S+)")
    assert not set(pick.findall(first)) & set(pick.findall(second))
