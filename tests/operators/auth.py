"""How tests sign an operator in to the admin: the same session the login page leaves behind after the
password and a verified second factor (tests/operators/test_login.py proves that page itself)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice


def staff_user(username: str, *perms: str, superuser: bool = False):
    """A staff login holding exactly `perms` ("app_label.codename")."""
    User = get_user_model()
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.com", "op-pass-123456")
    user = User.objects.create_user(username, f"{username}@example.com", "op-pass-123456", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def operator_login(client, user):
    """force_login plus a confirmed TOTP device recorded as verified in the (server-side) session."""
    client.force_login(user)
    device = TOTPDevice.objects.create(user=user, name="test authenticator", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    client.user = user
    return client
