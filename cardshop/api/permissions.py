"""Scopes: a view names the scope each of its actions needs (read for reads, write for changes by default)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import SAFE_METHODS, BasePermission


class KeyHasScope(BasePermission):
    message = _("This API key lacks the scope this request needs.")

    def has_permission(self, request, view) -> bool:
        client = request.user
        if not getattr(client, "is_authenticated", False) or not hasattr(client, "scopes"):
            return False
        needed = getattr(view, "action_scopes", {}).get(getattr(view, "action", None))
        needed = needed or ("read" if request.method in SAFE_METHODS else "write")
        return needed in client.scopes
