"""How tests sign an operator in to the admin: the same session the login page would leave behind."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission


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
    client.force_login(user)
    client.user = user
    return client
