"""`{{ amount|money }}`: a Money as buyers read it (¥9.90, US$9.90)."""

from django import template

from core.money import Money

register = template.Library()


@register.filter
def money(value: object) -> object:
    return value.display() if isinstance(value, Money) else value
