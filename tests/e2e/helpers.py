"""What several browser tests share: the two screen sizes, the no-horizontal-scroll check, channel accounts."""

from __future__ import annotations

import json
from pathlib import Path

from payments.models import ChannelAccount
from payments.simulators.base import SimAccount

DESKTOP = {"width": 1400, "height": 900}
# A plain 390 px viewport: with is_mobile Chromium zooms out to fit wide content, hiding the overflow we test.
PHONE = {"width": 390, "height": 844}

# (viewport, browser locale, the page's <html lang>) for the four screens of issue 10's proof point 1.
SCREENS = [
    (DESKTOP, "en-US", "en"),
    (DESKTOP, "zh-CN", "zh-hans"),
    (PHONE, "en-US", "en"),
    (PHONE, "zh-CN", "zh-hans"),
]
SCREEN_IDS = ["1400px-en", "1400px-zh", "390px-en", "390px-zh"]


def screen_name(viewport: dict, lang: str) -> str:
    """`390-zh`, `1400-en`: the middle of an artifact's file name."""
    return f"{viewport['width']}-{lang.split('-')[0]}"


def assert_no_horizontal_scroll(page, name: str, artifacts_dir: Path) -> None:
    """Save a full-page screenshot as `<name>.png`, then fail if the page is wider than the window."""
    page.screenshot(path=str(artifacts_dir / f"{name}.png"), full_page=True)
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"{name}: the page is {scroll} px wide on a {inner} px screen"


def channel_account_create(code: str, acct: SimAccount) -> ChannelAccount:
    """An enabled channel account on a provider simulator's demo merchant."""
    return ChannelAccount.objects.create(
        code=code,
        name=f"{code.title()} (simulator)",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
    )
