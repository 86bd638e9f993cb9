"""Merchants' API keys in the back office: made here (the whole key shown once, on the page that answers the form,
never stored or sent in a cookie), listed by prefix and last four, revoked by an action. Registered from
cardshop.admin."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget, UnfoldAdminSelectWidget, UnfoldAdminTextInputWidget

from cardshop.models.merchant_api import ApiKey, ApiScope
from cardshop.services.merchant_api import api_key_create, api_key_revoke
from core.errors import DomainError


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        label=_("scopes"),
        choices=ApiScope.choices,
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        initial=[ApiScope.READ],
    )

    class Meta:
        model = ApiKey
        fields = ["merchant", "name", "mode", "scopes"]
        widgets = {
            "merchant": UnfoldAdminSelectWidget,
            "name": UnfoldAdminTextInputWidget,
            "mode": UnfoldAdminSelectWidget,
        }


@admin.register(ApiKey)
class ApiKeyAdmin(ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "merchant", "masked", "mode", "scope_list", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["mode", "merchant"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return super().get_fields(request, obj)
        return [
            "name",
            "merchant",
            "mode",
            "masked",
            "scope_list",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        shown = ["masked", "scope_list", "created_by", "created_at", "last_used_at", "revoked_at"]
        return shown + ["merchant", "name", "mode"] if obj else []

    @admin.display(description=_("scopes"))
    def scope_list(self, obj: ApiKey) -> str:
        labels = dict(ApiScope.choices)
        return ", ".join(str(labels.get(s, s)) for s in obj.scopes)

    @admin.display(description=_("key"))
    def masked(self, obj: ApiKey) -> str:
        return obj.masked

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # revoked, never deleted: the audit trail names keys

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        """Its own page, not the change form: the key is made by the service in its own transaction, and the
        page answering the form is the only place the whole key is ever shown."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiKeyForm(request.POST or None)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form}
        if request.method == "POST" and form.is_valid():
            try:
                made = api_key_create(
                    merchant_id=form.cleaned_data["merchant"].pk,
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    mode=form.cleaned_data["mode"],
                    actor=request.user.get_username(),
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                context |= {"obj": made.key, "token": made.token, "title": _("API key made")}
                return TemplateResponse(request, "admin/cardshop/apikey_made.html", context)
        context["title"] = _("New API key")
        return TemplateResponse(request, "admin/cardshop/apikey_add.html", context)

    @admin.action(description=_("Revoke the selected keys"))
    def revoke(self, request: HttpRequest, queryset) -> None:
        for key in queryset:
            try:
                api_key_revoke(key_id=key.pk, actor=request.user.get_username())
            except DomainError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return
        self.message_user(request, _("%(n)d key(s) revoked.") % {"n": queryset.count()}, messages.SUCCESS)
