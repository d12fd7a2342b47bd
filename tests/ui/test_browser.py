"""A real browser on the real command: ``duro ui`` serves a store that workflows filled (with a
runtime still running on it), and the machine's headless Chromium opens the list and an
instance, checks rows and timeline bars, raises an event through the confirmation dialog and
watches the page refresh itself until the instance has completed. Screenshots go to
``$DURO_SCREENSHOTS`` (docs/images when regenerating the docs' pictures), else a temporary
folder.

Chromium comes from Debian's ``chromium`` package, which ``scripts/test.sh`` installs when
missing; Playwright (a dev dependency) drives it through ``executable_path`` and downloads
no browser. Without Chromium the test fails and says how to get it; ``DURO_SKIP_BROWSER=1``
turns that into a skip that pytest reports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio.from_thread
import pytest

import duro

from ._workflows import TOUR, WAITING, options, registry
from ._workflows import fill as fill_store

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ("--json", "--refresh", "0.3")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium() -> str:
    if CHROMIUM is not None:
        return CHROMIUM
    if os.environ.get("DURO_SKIP_BROWSER") == "1":
        pytest.skip("DURO_SKIP_BROWSER=1 and no Chromium: the browser test did not run")
    pytest.fail(
        "Chromium is not installed: run scripts/test.sh (it installs Debian's chromium), or "
        "apt-get install chromium; DURO_SKIP_BROWSER=1 skips this test instead"
    )


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("DURO_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``duro ui`` on a filled store; yields its address. The runtime keeps running so an
    event raised from the page is taken in."""
    _chromium()
    db = tmp_path_factory.mktemp("ui") / "orders.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DURO_", "COSMOS_"))}
    env["PYTHONPATH"] = str(ROOT)
    with anyio.from_thread.start_blocking_portal() as portal:
        store = duro.SqliteProvider(db)
        runtime = duro.Runtime(store, registry, options=options())
        with portal.wrap_async_context_manager(runtime):
            portal.call(fill_store, store)
            server = subprocess.Popen(
                [sys.executable, "-m", "duro", "ui", "--sqlite", str(db), *FLAGS],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                first = server.stdout.readline() if server.stdout else ""
                if not first:
                    server.wait(10)
                    pytest.fail(
                        f"duro ui did not start: {server.stderr.read() if server.stderr else ''}"
                    )
                started = json.loads(first)
                assert started["token"] is None  # loopback: no token
                assert started["url"].startswith("http://127.0.0.1:")
                yield started["url"]
            finally:
                server.send_signal(signal.SIGTERM)
                _, errors = server.communicate(timeout=15)  # and closes the pipes
            assert server.returncode == 0, errors


@pytest.fixture(scope="module")
def browser(served: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _page(browser: object, *, dark: bool = False) -> object:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    return browser.new_page(
        viewport={"width": 1280, "height": 1100}, color_scheme="dark" if dark else "light"
    )


def test_the_list_shows_rows_and_counts_in_chromium(
    browser: object, served: str, shots: Path
) -> None:
    from playwright.sync_api import Page, expect

    page = _page(browser)
    assert isinstance(page, Page)
    page.goto(served)

    rows = page.locator("tbody tr[data-instance]")
    expect(rows).to_have_count(6)
    assert rows.first.get_attribute("data-instance") == WAITING[-1]
    expect(page.locator('.count[data-state="failed"] .n')).to_have_text("1")
    expect(page.locator('.count[data-state="running"] .n')).to_have_text("3")
    page.screenshot(path=shots / "ui-list.png")

    page.select_option("select[name=state]", "completed")
    page.click("button:has-text('Filter')")
    expect(rows).to_have_count(2)
    page.close()


def test_an_instance_page_draws_its_timeline_in_chromium(
    browser: object, served: str, shots: Path
) -> None:
    from playwright.sync_api import Page, expect

    for dark in (False, True):
        page = _page(browser, dark=dark)
        assert isinstance(page, Page)
        page.goto(served)
        page.click(f"a[href='/instances/{TOUR}']")

        expect(page.locator("#state")).to_have_text("completed")
        flaky = page.locator('.lane[data-label="flaky"]')
        expect(flaky.locator(".bar")).to_have_count(3)
        expect(flaky.locator(".bar-failed")).to_have_count(1)
        expect(flaky.locator(".bar-backoff")).to_have_count(1)
        expect(page.locator('.lane[data-kind="child"] a')).to_have_text("child")
        expect(page.locator('.lane[data-kind="signals"] .mark-event')).to_have_count(1)
        for bar in page.locator(".timeline .bar").all():
            box = bar.bounding_box()
            assert box is not None and box["width"] >= 2 and box["height"] >= 4
        expect(page.locator('tr[data-event="EventRaised"]')).to_have_count(1)
        page.screenshot(path=shots / ("ui-instance-dark.png" if dark else "ui-instance.png"))
        page.close()


def test_raising_an_event_from_the_page_completes_the_instance_live(
    browser: object, served: str, shots: Path
) -> None:
    from playwright.sync_api import Page, expect

    page = _page(browser)
    assert isinstance(page, Page)
    page.goto(f"{served}instances/{WAITING[0]}")
    expect(page.locator("#state")).to_have_text("running")

    page.click("button:has-text('Raise event…')")
    dialog = page.locator("#raise-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("input[name=name]").fill("approve")
    dialog.locator("textarea[name=data]").fill('"the browser"')
    page.screenshot(path=shots / "ui-raise-event.png")
    dialog.locator("button[type=submit]").click()

    expect(page.locator(".notice")).to_contain_text("Raised event approve")
    # No reload: the page refreshes itself until the runtime has taken the event in.
    expect(page.locator("#state")).to_have_text("completed", timeout=20_000)
    expect(page.locator('tr[data-event="EventRaised"]')).to_contain_text("name=approve")
    expect(page.locator("pre.json").nth(1)).to_contain_text("100 approved by the browser")
    page.close()
