"""Point 12: staff sessions are server-side and die at logout, admin logins are throttled per account and per
client IP, and operators need a second factor (TOTP or a one-time recovery code) when it is required."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from cardshop.models import Order
from tests.operators.auth import staff_user

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "op-pass-123456"


@pytest.fixture(autouse=True)
def fast_and_fresh(settings):
    # Many logins per test: a fast hasher for staff passwords (the buyers' query hasher stays).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]
    settings.CARDSHOP_ADMIN_OTP_REQUIRED = True
    cache.clear()  # throttle counters live in the cache
    yield
    cache.clear()


def _code(device: TOTPDevice, offset: int = 0) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift + offset):06d}"


def _login(client, username, password=PASSWORD, otp="", ip="10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password, "otp_token": otp}, REMOTE_ADDR=ip)


def _device(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def _in_admin(client) -> bool:
    resp = client.get("/admin/")
    return resp.status_code == 200 and 'id="dashboard"' in resp.content.decode()  # the home page, not the login


# ---- second factor --------------------------------------------------------------------------------------


def test_password_alone_does_not_open_the_admin_when_a_second_factor_is_required():
    user = staff_user("op", superuser=True)
    client = Client()
    resp = _login(client, "op")  # no device, no code
    assert resp.status_code == 200 and "valid code from your authenticator" in resp.content.decode()
    assert not _in_admin(client)
    _device(user)
    assert _login(client, "op", otp="000000").status_code == 200  # wrong code (1 in a million it is right)
    assert not _in_admin(client)
    # A session with the password done but no verified device (as force_login leaves) is not staff either.
    half = Client()
    half.force_login(user)
    assert half.get("/admin/").status_code == 302
    assert half.get("/admin/cardshop/order/").status_code == 302


def test_a_valid_totp_code_opens_the_admin():
    device = _device(staff_user("op", superuser=True))
    client = Client()
    resp = _login(client, "op", otp=_code(device))
    assert resp.status_code == 302 and resp["Location"] == "/admin/"
    assert _in_admin(client)


def test_a_totp_code_cannot_be_replayed():
    device = _device(staff_user("op", superuser=True))
    code = _code(device)
    assert _login(Client(), "op", otp=code).status_code == 302
    assert _login(Client(), "op", otp=code).status_code == 200  # same time step: refused


def test_recovery_codes_from_the_command_work_once():
    staff_user("op", superuser=True)
    out = io.StringIO()
    call_command("operator_otp", "op", "--codes", "3", stdout=out)
    text = out.getvalue()
    assert "otpauth://totp/" in text
    codes = text.split("Recovery codes")[1].split()[-3:]
    first = Client()
    assert _login(first, "op", otp=codes[0]).status_code == 302 and _in_admin(first)
    assert _login(Client(), "op", otp=codes[1]).status_code == 302  # each code is its own
    again = Client()
    assert _login(again, "op", otp=codes[0]).status_code == 200 and not _in_admin(again)


def test_an_empty_form_is_an_error_not_a_crash():
    resp = Client().post(LOGIN, {"username": "", "password": "", "otp_token": ""})
    assert resp.status_code == 200 and "This field is required." in resp.content.decode()


def test_without_the_requirement_a_password_is_enough(settings):
    settings.CARDSHOP_ADMIN_OTP_REQUIRED = False  # what DEBUG (the demo) defaults to
    staff_user("op", superuser=True)
    client = Client()
    assert 'name="otp_token"' not in client.get(LOGIN).content.decode()
    assert _login(client, "op").status_code == 302 and _in_admin(client)


# ---- sessions -------------------------------------------------------------------------------------------


def test_logout_kills_the_staff_session_and_a_replayed_cookie_is_refused(settings):
    device = _device(staff_user("op", superuser=True))
    client = Client()
    assert _login(client, "op", otp=_code(device)).status_code == 302
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert Session.objects.filter(session_key=cookie).exists()  # server-side
    client.post("/admin/logout/")
    assert not Session.objects.filter(session_key=cookie).exists()

    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = cookie
    resp = replay.get("/admin/cardshop/order/")
    assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/")


def test_buyers_keep_a_signed_cookie_and_no_session_row(settings, product):
    client = Client()
    resp = client.post(
        f"/p/{product.slug}/",
        {"quantity": 1, "email": "b@example.com", "query_password": "secret1"},
        REMOTE_ADDR="10.0.0.9",
    )
    assert resp.status_code == 302
    assert settings.CARDSHOP_BUYER_SESSION_COOKIE_NAME in resp.cookies
    assert settings.SESSION_COOKIE_NAME not in resp.cookies
    assert Session.objects.count() == 0
    order = Order.objects.get()
    assert client.get(f"/orders/{order.order_no}/").status_code == 200  # the signed cookie grants the order
    assert Client().get(f"/orders/{order.order_no}/").status_code == 404  # and only it does


# ---- throttling -----------------------------------------------------------------------------------------


@pytest.fixture
def limits(settings):
    settings.CARDSHOP_ADMIN_LOGIN_FAILURES_PER_ACCOUNT = 3
    settings.CARDSHOP_ADMIN_LOGIN_FAILURES_PER_IP = 5
    return settings


def test_failed_logins_lock_the_account_even_for_the_right_password(limits):
    device = _device(staff_user("op", superuser=True))
    other = _device(staff_user("other", superuser=True))
    for _ in range(3):
        assert _login(Client(), "op", password="wrong-password", ip="10.0.0.1").status_code == 200
    locked = _login(Client(), "op", otp=_code(device), ip="10.0.0.1")
    assert locked.status_code == 200 and "Too many failed logins" in locked.content.decode()
    # The account is locked from every address ...
    assert "Too many failed logins" in _login(Client(), "op", otp=_code(device), ip="10.9.9.9").content.decode()
    # ... and another account from the same address is not.
    client = Client()
    assert _login(client, "other", otp=_code(other), ip="10.0.0.1").status_code == 302 and _in_admin(client)


def test_failed_logins_lock_the_address_for_every_account(limits):
    device = _device(staff_user("op", superuser=True))
    for n in range(5):  # a spray over many names: each account stays under its limit
        _login(Client(), f"guess{n}", password="wrong-password", ip="2001:db8:1:2::10")
    from_same_64 = _login(Client(), "op", otp=_code(device), ip="2001:db8:1:2::ffff")
    assert "Too many failed logins" in from_same_64.content.decode()
    client = Client()
    assert _login(client, "op", otp=_code(device), ip="2001:db8:9:9::1").status_code == 302 and _in_admin(client)


def test_a_wrong_second_factor_counts_as_a_failed_login(limits):
    device = _device(staff_user("op", superuser=True))
    for _ in range(3):
        _login(Client(), "op", otp="000001", ip="10.0.0.1")
    assert "Too many failed logins" in _login(Client(), "op", otp=_code(device)).content.decode()
    assert get_user_model().objects.get(username="op").last_login is None


def test_the_daily_beat_task_drops_expired_staff_sessions(db):
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from cardshop.celery import app
    from cardshop.tasks import staff_sessions_clear_task

    Session.objects.create(session_key="old" * 8, session_data="x", expire_date=timezone.now() - timedelta(days=1))
    Session.objects.create(session_key="new" * 8, session_data="x", expire_date=timezone.now() + timedelta(days=1))
    assert "cardshop.staff_sessions_clear" in {e["task"] for e in app.conf.beat_schedule.values()}
    staff_sessions_clear_task.delay().get()
    assert list(Session.objects.values_list("session_key", flat=True)) == ["new" * 8]
