"""The README's screenshots (docs/*.png), taken from a running demo (`make run`) with Debian's Chromium.

    .venv/bin/python scripts/docs_screenshots.py --base http://127.0.0.1:8000 --password <operator password>

Each picture is quantized to 256 colours with Pillow so the PNGs stay small.
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parent.parent / "docs"


def save(png: bytes, name: str) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(DOCS / name, optimize=True)
    print(f"docs/{name}: {(DOCS / name).stat().st_size // 1024} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="operator")
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    DOCS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        desktop = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
        page = desktop.new_page()
        page.goto(f"{args.base}/")
        save(page.screenshot(), "storefront-zh.png")
        page.goto(f"{args.base}/admin/login/")
        page.fill("#id_username", args.user)
        page.fill("#id_password", args.password)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#dashboard")
        page.wait_for_timeout(500)  # the charts draw after load
        save(page.screenshot(full_page=True), "dashboard-zh.png")
        page.goto(f"{args.base}/admin/cardshop/order/")
        save(page.screenshot(), "orders-zh.png")
        phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US", is_mobile=True)
        page = phone.new_page()
        page.goto(f"{args.base}/")
        page.click("a[href^='/p/']")
        save(page.screenshot(full_page=True), "product-phone-en.png")
        browser.close()


if __name__ == "__main__":
    main()
