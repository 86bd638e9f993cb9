from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CardshopConfig(AppConfig):
    name = "cardshop"
    verbose_name = _("Storefront")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the tasks with the Celery app in every process, so cardshop.jobs can dispatch them by name.
        from cardshop import tasks  # noqa: F401
