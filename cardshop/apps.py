from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CardshopConfig(AppConfig):
    name = "cardshop"
    verbose_name = _("Storefront")
    default_auto_field = "django.db.models.BigAutoField"
