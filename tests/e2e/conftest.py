"""Real-browser fixtures: Debian's Chromium driven by Playwright's sync API (no browser downloads)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Playwright's sync API runs an asyncio loop in the test thread; Django would then refuse ORM calls
# from that thread with SynchronousOnlyOperation. The tests only touch the ORM between browser steps.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

ARTIFACTS = Path(__file__).parent / "artifacts"
DEFAULT_TIMEOUT_MS = 15_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    executable = shutil.which("chromium")
    if executable is None:
        message = "the e2e tests need a system Chromium (`chromium` on PATH)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright gives each launch a fresh temporary profile directory.
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(DEFAULT_TIMEOUT_MS)
    js_errors: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    yield page
    context.close()
    assert not js_errors, f"uncaught JavaScript errors: {js_errors}"


@pytest.fixture(scope="session")
def alipay_sim():
    from payments.simulators.alipay import AlipaySimulator

    sim = AlipaySimulator().start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def stripe_sim():
    from payments.simulators.stripe import StripeSimulator

    sim = StripeSimulator().start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def wechatpay_sim():
    from payments.simulators.wechatpay import WechatPaySimulator

    sim = WechatPaySimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
