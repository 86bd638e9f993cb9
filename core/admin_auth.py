"""Operators' accounts and groups in the admin theme: Django's own User and Group admins, re-registered on
unfold's ModelAdmin with its forms, so password and permission widgets match the rest of the back office.

Permission names are stored in English when migrations create them ("Can add merchant"); the pickers show them in
the operator's language instead: Django's four default actions from our catalog, our own permissions (declared
with gettext_lazy in each model's Meta) through gettext."""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group, Permission, User
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

for _model in (User, Group):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


DEFAULT_ACTIONS = {
    "add": _("Can add %(model)s"),
    "change": _("Can change %(model)s"),
    "delete": _("Can delete %(model)s"),
    "view": _("Can view %(model)s"),
}


def permission_label(permission: Permission) -> str:
    """ "App | model | what it allows", each part in the operator's language."""
    model = permission.content_type.model_class()
    if model is None:  # a model that no longer exists
        return str(permission)
    opts = model._meta
    action, _sep, target = permission.codename.partition("_")
    if action in DEFAULT_ACTIONS and target == opts.model_name:
        name = DEFAULT_ACTIONS[action] % {"model": opts.verbose_name}
    else:
        name = gettext(permission.name)
    return f"{apps.get_app_config(opts.app_label).verbose_name} | {opts.verbose_name} | {name}"


class _PermissionLabels:
    def formfield_for_manytomany(self, db_field, request=None, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name in ("permissions", "user_permissions") and field is not None:
            field.label_from_instance = permission_label
        return field


@admin.register(User)
class UserAdmin(_PermissionLabels, DjangoUserAdmin, ModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm


@admin.register(Group)
class GroupAdmin(_PermissionLabels, DjangoGroupAdmin, ModelAdmin):
    pass
