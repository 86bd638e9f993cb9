"""The demo seed generates its secrets (nothing a forger could read in the source) and wires one channel
account per running simulator from the account files the simulators wrote."""

import io
import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from cardshop.models import CardSecret, Product
from payments.models import ChannelAccount
from payments.simulators.catalog import SIMULATORS, simulator_class

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def sim_accounts(tmp_path_factory):
    """Each simulator's CLI writes its account file; the same shape is written here from a started one."""
    folder = tmp_path_factory.mktemp("sim")
    for code in SIMULATORS:
        sim = simulator_class(code)().start()
        try:
            acct = sim.account(webhook_url=f"http://127.0.0.1:8000/notify/{code}/")
            (folder / f"{code}.json").write_text(json.dumps(acct.__dict__))
        finally:
            sim.stop()
    return folder


def seed(folder):
    out = io.StringIO()
    call_command("seed_demo", sim_accounts=str(folder), stdout=out)
    return out.getvalue()


def test_seed_wires_every_simulator_and_prints_no_key(sim_accounts):
    first = seed(sim_accounts)
    password = re.search(r"Operator login: operator / (\S+)", first).group(1)
    assert get_user_model().objects.get(username="operator").check_password(password)
    assert sorted(ChannelAccount.objects.values_list("code", flat=True)) == sorted(SIMULATORS)
    for code in SIMULATORS:
        stored = ChannelAccount.objects.get(code=code).credentials_dict()
        written = json.loads((sim_accounts / f"{code}.json").read_text())["credentials"]
        assert stored == written
        assert not any(v in first for v in written.values() if len(v) > 8)  # keys are never printed
    assert Product.objects.count() == 5
    assert CardSecret.objects.count() == 45
    again = seed(sim_accounts)  # idempotent, and the password is not printed twice
    assert password not in again
    assert Product.objects.count() == 5 and CardSecret.objects.count() == 45
    assert ChannelAccount.objects.count() == len(SIMULATORS)


def test_two_seeds_share_no_password(sim_accounts):
    first = seed(sim_accounts)
    get_user_model().objects.all().delete()
    second = seed(sim_accounts)
    pick = re.compile(r"operator / (\S+)")
    assert pick.findall(first) != pick.findall(second)


def test_demo_products_are_named_in_both_languages(sim_accounts):
    seed(sim_accounts)
    for name, description in Product.objects.values_list("name", "description"):
        for text in (name, description):
            assert re.search(r"[\u4e00-\u9fff]", text) and re.search(r"[A-Za-z]{3}", text), text


def test_demo_shop_has_categories_an_announcement_and_drawn_pictures(sim_accounts, client):
    from cardshop.models import Category, ProductImage, ShopAnnouncement

    seed(sim_accounts)
    seed(sim_accounts)  # idempotent: nothing doubled
    assert Category.objects.count() == 3
    assert Product.objects.filter(category__isnull=True).count() == 1  # listed under "Other"
    assert ProductImage.objects.count() == Product.objects.count() == 5
    for image in ProductImage.objects.all():
        assert (image.width, image.height, image.thumb_size) == (640, 640, 320)
        assert bytes(image.full_jpeg[:3]) == b"\xff\xd8\xff"
    announcement = ShopAnnouncement.objects.get()
    assert announcement.is_active and "Welcome to the demo shop" in announcement.text
    page = client.get("/").content.decode()
    assert 'id="announcement"' in page and 'id="category-gift-cards"' in page
