"""Fixtures of the console's browser tests: Playwright for Python driving Debian's ``chromium``.

- ``browser`` (session): one headless chromium for the whole session, launched from the system's
  executable (``chromium_path()``; never ``playwright install``).
- ``world``: a ``ConsoleWorld``: the NinjaOne, ConnectWise and Stripe simulators served over HTTP
  (``hub.testing.serve``), a config for them (two scheduled jobs that do not fire during a test:
  their next runs show), a ``hub.service.Service`` on it, its scheduler running, one sync already
  run (with Stripe refusing the first invoice request, so ``invoice:acme:<period>`` is failed and
  the agreement quantities are held), and the daemon's app (the API with the console mounted, as
  ``msp-hub daemon`` serves it) served by waitress in a thread at ``world.url``. ``world.clock``
  moves the console's session clock (``world.clock.advance(seconds)``).
- ``page``: a fresh browser page (its own cookies) whose relative URLs go to ``world.url``.
- ``signed_in``: ``page`` signed in as "Alice" with the admin token, on the overview.
- ``csrf(page)``: the CSRF token of the page's session (what htmx sends as ``X-CSRF-Token``).
- ``post(page, path, data, csrf=...)``: a POST from the page's browser context (its cookies).

A later page adds its test as a ``tests/console/test_<page>.py`` using ``signed_in`` and
``world``: ``signed_in.goto("/console/<page>")``, then Playwright's locators and
``playwright.sync_api.expect`` on what the page shows; ``world.read(fn)`` reads the store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "console-token-5e0a9d1c7b3f"
NAME = "Alice"
ENV = {"C_NINJA": "", "C_CW": "", "C_STRIPE": "", "C_TOKEN": TOKEN}


def chromium_path() -> str:
    """The system's chromium (Debian's ``chromium`` package); fails loudly, naming the fix."""
    for candidate in (os.environ.get("MSP_HUB_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      "/usr/bin/chromium"):
        if candidate and os.path.exists(candidate):
            return candidate
    pytest.fail("the console's browser tests need the system's chromium and found none: install it with "
                "`apt-get install -y chromium` (Debian), or set MSP_HUB_CHROMIUM to a chromium executable",
                pytrace=False)


class Clock:
    """The console's session clock: real monotonic time plus what a test added."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class ConsoleWorld:
    """The simulators, a config, a Service on it, and the daemon's app served at ``url``."""

    def __init__(self, tmp_path: Path, stack: contextlib.ExitStack, *, idle: int = 1800, absolute: int = 43200):
        from hub.api import make_app, serve_api
        from hub.console import ConsoleSettings, Mounted, make_console
        from hub.demo import seed_connectwise, seed_ninjaone
        from hub.periods import last_ended_period
        from hub.service import Service
        from hub.testing import serve
        from plugins.stripe.simulator import StripeSimulator

        period = last_ended_period(datetime.now(timezone.utc), "Europe/Paris")
        self.period = period.name   # "2026-11": the period the fixture's sync invoiced
        self.ninja, self.cw = seed_ninjaone(24), seed_connectwise(period)
        self.stripe = StripeSimulator(api_key="sk_test_console")
        urls = {name: stack.enter_context(serve(sim.handler))
                for name, sim in (("ninja", self.ninja), ("cw", self.cw), ("stripe", self.stripe))}
        self.config = tmp_path / "msp-hub.toml"
        self.config.write_text(f"""
timezone = "Europe/Paris"
database = "hub.db"
mappings = "{(ROOT / 'mappings').as_posix()}"
[connectors.ninjaone]
base_url = "{urls['ninja']}"
client_id = "{self.ninja.client_id}"
client_secret_env = "C_NINJA"
[connectors.connectwise]
site = "{urls['cw']}"
company_id = "{self.cw.company_id}"
public_key = "{self.cw.public_key}"
private_key_env = "C_CW"
client_id = "{self.cw.client_id}"
[connectors.stripe]
base_url = "{urls['stripe']}"
api_key_env = "C_STRIPE"
[admin]
port = 1
token_env = "C_TOKEN"
[logging]
level = "warning"

[[schedule.jobs]]
name = "psa"
connectors = ["connectwise"]
every = "6h"

[[schedule.jobs]]
name = "invoices"
cron = "0 6 1 * *"
""")
        env = dict(ENV, C_NINJA=self.ninja.client_secret, C_CW=self.cw.private_key, C_STRIPE=self.stripe.api_key)
        self.service = Service(self.config, environ=env)
        self.stripe.fail_next(400, times=1, path="/v1/invoices*")   # the first invoice (acme's) fails
        self.service.trigger({})
        self.service.join()
        from hub.daemon import build_scheduler, parse_schedule
        scheduler = build_scheduler(self.service, parse_schedule(self.service.config, self.service.streams),
                                    catch_up=False)   # no job fires during a test (every 6 h, the 1st at 06:00)
        scheduler.start()
        stack.callback(scheduler.shutdown, wait=False)
        self.clock = Clock()
        console = make_console(self.service, ConsoleSettings(idle=idle, absolute=absolute))
        self.sessions = console.config["CONSOLE_SESSIONS"]
        self.sessions.clock = self.clock
        self.app = Mounted(make_app(self.service), console)          # what hub.console.mount builds
        self.server = serve_api(self.app, "127.0.0.1", 0)
        thread = threading.Thread(target=self.server.run, name="console-test-api", daemon=True)
        thread.start()
        stack.callback(thread.join, 10)
        stack.callback(self.server.close)
        stack.callback(self.service.join, 30)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def read(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(store)`` on a hub opened for the call."""
        hub = self.service.open_hub()
        try:
            return fn(hub.store)
        finally:
            hub.close()

    def action(self, key: str) -> dict:
        return self.read(lambda store: store.get_action(key))


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture
def world(tmp_path):
    with contextlib.ExitStack() as stack:
        yield ConsoleWorld(tmp_path, stack)


@pytest.fixture
def page(browser, world):
    context = browser.new_context(base_url=world.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page, token: str = TOKEN, name: str = NAME) -> None:
    """Fill the sign-in form and send it."""
    page.goto("/console/signin")
    page.get_by_label("Admin token").fill(token)
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def signed_in(page):
    sign_in(page)
    page.wait_for_url("**/console/")
    return page


def csrf(page) -> str:
    """The CSRF token of the page's session, as htmx sends it (``hx-headers`` on <body>)."""
    import json
    return json.loads(page.locator("body").get_attribute("hx-headers"))["X-CSRF-Token"]


def post(page, path: str, data: dict[str, str], headers: dict[str, str] | None = None):
    """A form POST from the page's browser context (its cookies, not its CSRF token unless given)."""
    return page.request.post(path, form=data, headers=headers or {}, max_redirects=0)
