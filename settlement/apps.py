from importlib import import_module

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SettlementConfig(AppConfig):
    name = "settlement"
    verbose_name = _("Settlement")
    default_auto_field = "django.db.models.BigAutoField"

    def import_models(self) -> None:
        super().import_models()
        import_module("settlement.checks")  # LedgerCheckRun lives beside the check it records

    def ready(self) -> None:
        # Register the tasks with the Celery app in every process (web, beat, shell), not only the worker's
        # autodiscovery, so settlement.payouts can dispatch them by name after a commit.
        import_module("settlement.tasks")
