"""Buyer-facing template filters: deadlines (a UTC instant for the browser, the time left), instants shown in the
buyer's time zone, and delivered links."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

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


@register.filter
def is_http_url(value: str) -> bool:
    """A delivered text that is one http(s) URL (a reusable link): shown as a link, not as a code to copy."""
    value = (value or "").strip()
    return value.startswith(("https://", "http://")) and not any(c.isspace() for c in value)


@register.simple_tag
def local_time(value: dt.datetime | None) -> SafeString | str:
    """An instant for buyers: the shop's local time with its UTC offset (never a bare "CST"), in a <time> whose
    UTC datetime cardshop/local-time.js turns into the buyer's own clock and zone."""
    if value is None:
        return ""
    local = timezone.localtime(value)
    return format_html(
        '<time class="local-time" datetime="{}">{} (UTC{})</time>',
        utc_iso(value),
        dateformat.format(local, "Y-m-d H:i"),
        dateformat.format(local, "O"),
    )
