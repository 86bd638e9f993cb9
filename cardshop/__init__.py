"""Django project and storefront: the top layer, where every entry point that spans apps lives."""

from cardshop.celery import app as celery_app

__all__ = ["celery_app"]
