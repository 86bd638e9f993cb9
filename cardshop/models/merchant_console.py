"""Who may use a merchant's console (/merchant/): a login of the site's users, bound to one merchant. Made by an
operator in the admin, with the user's authenticator app (the second factor, as for staff)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from core.models import Merchant


class MerchantMember(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="merchant_member", verbose_name=_("user")
    )
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+", verbose_name=_("merchant"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("merchant console user")
        verbose_name_plural = _("merchant console users")

    def __str__(self) -> str:
        return f"{self.user} @ {self.merchant}"
