"""Deadlines for buyers: an unambiguous UTC instant for the browser, and the time left as the page is rendered."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def utc_iso(value: dt.datetime | None) -> str:
    """ISO 8601 in UTC with a Z, which every browser's Date.parse reads the same way."""
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@register.filter
def mmss_left(value: dt.datetime | None) -> str:
    """Minutes and seconds from now until `value` ("00:00" once past): what a page without JavaScript shows."""
    if value is None:
        return ""
    left = max(0, int((value - timezone.now()).total_seconds()))
    return f"{left // 60:02d}:{left % 60:02d}"
