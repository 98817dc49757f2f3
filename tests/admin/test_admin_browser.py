"""The back-office in a real browser: Debian's Chromium driven by Playwright.

A call is made through the whole product (webhook, media stream, realtime stand-in) by the
simulated Twilio caller; staff log in, play and seek its recording from the conversation, then
watch a second call appear on the live page and leave it when it ends. Screenshots go to
test-artifacts/browser/. Without Chromium or the playwright package the test is skipped, unless
REQUIRE_BROWSER=1 (`make test-browser`), where that is a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from e2e_support import LiveBridge, finished_call
from support import REPO_ROOT

from simulator.twilio.script import standard_call

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    # WhiteNoise serves the stylesheet and scripts with a synchronous iterator; harmless for
    # static files, and silenced in settings for the same reason (pytest resets the filters).
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous"),
]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    # Headless Chromium has no sound device; playback must still advance.
    "--autoplay-policy=no-user-gesture-required",
]
PASSWORD = "a long test password"


def _browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev,browser]')"
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
def chromium() -> Callable[[], AbstractContextManager[Any]]:
    """Opens a Chromium page. First among the fixtures, so a missing browser skips (or fails)
    before any server starts. A factory rather than a page: while Playwright's sync API runs,
    its event loop is this thread's, and Django refuses ORM calls from a thread with one."""
    missing = _browser_missing()
    if missing:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1, but {missing}")
        pytest.skip(missing)

    @contextlib.contextmanager
    def open_page() -> Iterator[Any]:
        from playwright.sync_api import sync_playwright

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            context = browser.new_context(viewport={"width": 1440, "height": 1000})
            try:
                yield context.new_page()
            finally:
                context.close()
                browser.close()

    return open_page


def _place_call_in_thread(bridge: LiveBridge, pool: ThreadPoolExecutor):
    # The simulator runs its own asyncio loop (asyncio.run); Playwright's sync API keeps one in
    # this thread, so the call runs in another.
    return pool.submit(bridge.place_call, standard_call())


def _staff_user() -> None:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("lead", password=PASSWORD, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="calls", codename__in=["view_call", "change_call"]
        )
    )


def _log_in(page: Any, base: str, next_path: str) -> None:
    page.goto(f"{base}/admin/login/?next={next_path}")
    page.fill("#id_username", "lead")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}{next_path}")


def test_staff_listen_to_a_call_and_watch_the_next_one_live(chromium, live_bridge) -> None:
    _staff_user()
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = _place_call_in_thread(live_bridge, pool).result(timeout=120)
        assert first.report.script_error is None, first.report
        call = finished_call(first.report.call_id)
        lines = list(call.transcripts.order_by("start_ms", "sequence"))
        recording = call.recordings.get()
        assert len(lines) >= 4

        with chromium() as page:
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda m: _console_error(m, errors))
            _listen(page, live_bridge.url, call.pk, recording.duration_s, lines[-1].start_ms)
            second = _watch_live(page, live_bridge, pool)
            # The other pages, for the record.
            for name, path in (("call-list", "/admin/calls/call/"), ("analytics", ANALYTICS)):
                page.goto(f"{live_bridge.url}{path}")
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            # Closes the live feed's connection before the server stops.
            page.goto("about:blank")
            assert errors == []
    finished_call(second.report.call_id)


ANALYTICS = "/admin/calls/call/analytics/"


def _console_error(message: Any, errors: list[str]) -> None:
    # The browser asks for /favicon.ico by itself; the project has none to serve.
    if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
        errors.append(f"{message.text} ({message.location.get('url')})")


AUDIO = "document.getElementById('bo-audio')"


def _listen(page: Any, base: str, call_id: Any, recording_s: float, last_line_ms: int) -> None:
    """The call page: the recording becomes playable, and a click on a line seeks to it."""
    change_path = f"/admin/calls/call/{call_id}/change/"
    _log_in(page, base, change_path)
    assert page.locator("#bo-audio").get_attribute("preload") == "auto"
    page.wait_for_function(f"{AUDIO}.readyState >= 2", timeout=20_000)
    duration = page.evaluate(f"{AUDIO}.duration")
    assert duration == pytest.approx(recording_s, abs=0.1)
    # Seekable across the whole file: the server answers byte ranges.
    seekable_end = page.evaluate(
        f"(() => {{ const a = {AUDIO}; "
        "return a.seekable.length ? a.seekable.end(a.seekable.length - 1) : 0; })()"
    )
    assert seekable_end == pytest.approx(duration, abs=0.1)
    assert page.evaluate(f"{AUDIO}.currentTime") == 0
    page.screenshot(path=str(ARTIFACTS / "call-page.png"), full_page=True)

    page.locator("#bo-transcript [data-seek-ms]").last.click()
    page.wait_for_function(
        f"t => {AUDIO}.currentTime >= t - 0.05", arg=last_line_ms / 1000, timeout=10_000
    )
    page.screenshot(path=str(ARTIFACTS / "call-page-seeked.png"), full_page=True)


def _watch_live(page: Any, bridge: LiveBridge, pool: ThreadPoolExecutor) -> Any:
    """The live page: a new call appears while in progress and leaves when it ends."""
    page.goto(f"{bridge.url}/admin/calls/call/live/")
    page.wait_for_selector("#bo-live-state[data-state=live]", timeout=15_000)
    assert page.locator("#bo-live-rows tr[data-call-id]").count() == 0
    placing = _place_call_in_thread(bridge, pool)
    row = page.wait_for_selector("#bo-live-rows tr[data-call-id]", timeout=30_000)
    live_id = row.get_attribute("data-call-id")
    page.screenshot(path=str(ARTIFACTS / "live-call-in-progress.png"), full_page=True)
    second = placing.result(timeout=120)
    assert second.report.script_error is None, second.report
    assert live_id == second.report.call_id
    page.wait_for_selector(f'#bo-live-ended li[data-call-id="{live_id}"]', timeout=30_000)
    page.wait_for_selector(f'#bo-live-rows tr[data-call-id="{live_id}"]', state="detached")
    assert page.locator("#bo-live-count").inner_text() == "0"
    page.screenshot(path=str(ARTIFACTS / "live-call-ended.png"), full_page=True)
    return second
