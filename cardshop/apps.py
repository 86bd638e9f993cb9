from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy as _


class CardshopConfig(AppConfig):
    name = "cardshop"
    verbose_name = _("Storefront")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the tasks with the Celery app in every process, so cardshop.jobs can dispatch them by name.
        from cardshop import tasks  # noqa: F401


class CardShopAdminConfig(AdminConfig):
    """django.contrib.admin with the operators' site (second factor, throttled login) as `admin.site`."""

    default_site = "cardshop.admin_site.CardShopAdminSite"
