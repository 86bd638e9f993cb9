"""`Authorization: Bearer ck_live_...`: the merchant's key, found by its prefix and checked by its keyed hash."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from cardshop.services.merchant_api import api_key_authenticate


@dataclass(frozen=True)
class ApiClient:
    """Who is calling: one key of one merchant. Every query of the API is scoped by `merchant_id`."""

    key_id: int
    merchant_id: int
    scopes: frozenset[str]
    mode: str
    is_authenticated: bool = True

    @property
    def pk(self) -> int:
        return self.key_id


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiClient, int] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        kind, _sep, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise exceptions.AuthenticationFailed(_("Send the API key as: Authorization: Bearer <key>."))
        key = api_key_authenticate(token=token.strip())
        if key is None:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked API key."))
        client = ApiClient(key_id=key.pk, merchant_id=key.merchant_id, scopes=frozenset(key.scopes), mode=key.mode)
        return client, key.pk

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
