"""Operators' second-factor devices in the admin: listed (who has one, confirmed, last used) and deletable (a lost
phone), never shown or edited here. Keys and recovery codes are secrets: `manage.py operator_otp` makes them and
shows them once. django-otp's own admins show the key and a QR and speak English only, so they are replaced by
admins of translated proxies (core.models.AuthenticatorDevice, RecoveryCodes)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from unfold.admin import ModelAdmin

from core.models import AuthenticatorDevice, RecoveryCodes

for _model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


class _DeviceAdmin(ModelAdmin):
    list_display = ["operator", "device_name", "is_confirmed", "created", "last_used"]
    search_fields = ["user__username", "user__email", "name"]
    fields = readonly_fields = ["operator", "device_name", "is_confirmed", "created", "last_used"]

    @admin.display(description=_("operator"), ordering="user__username")
    def operator(self, obj) -> str:
        return obj.user.get_username()

    @admin.display(description=_("name"), ordering="name")
    def device_name(self, obj) -> str:
        return obj.name

    @admin.display(description=_("confirmed"), boolean=True, ordering="confirmed")
    def is_confirmed(self, obj) -> bool:
        return obj.confirmed

    @admin.display(description=_("created at"), ordering="created_at")
    def created(self, obj):
        return obj.created_at

    @admin.display(description=_("last used at"), ordering="last_used_at")
    def last_used(self, obj):
        return obj.last_used_at

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def has_add_permission(self, request) -> bool:
        return False  # `manage.py operator_otp` creates devices and shows their secret once

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuthenticatorDevice)
class TOTPDeviceAdmin(_DeviceAdmin):
    pass


@admin.register(RecoveryCodes)
class StaticDeviceAdmin(_DeviceAdmin):
    list_display = [*_DeviceAdmin.list_display, "codes_left"]
    fields = readonly_fields = [*_DeviceAdmin.fields, "codes_left"]

    @admin.display(description=_("recovery codes left"))
    def codes_left(self, obj: RecoveryCodes) -> int:
        return obj.token_set.count()
