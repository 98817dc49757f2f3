"""The agent form's backend select in a real browser (Debian's Chromium, Playwright): choosing
GPT-Live hides the Realtime API's settings and offers GPT-Live's models, the save keeps the
hidden settings as stored; choosing the Realtime API again shows them. Skipped without Chromium
or the playwright package, unless REQUIRE_BROWSER=1 (`make test-browser`)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from agents import catalog
from agents.models import Agent

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "pw"  # make_user's


@pytest.fixture
def chromium_missing() -> None:
    missing = None
    if importlib.util.find_spec("playwright") is None:
        missing = "the playwright package is not installed (pip install -e '.[dev,browser]')"
    elif not CHROMIUM.exists():
        missing = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if missing:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1, but {missing}")
        pytest.skip(missing)


def _visible_rows(page) -> set[str]:
    return {
        name
        for name in (*catalog.REALTIME_ONLY_FIELDS, "max_call_minutes")
        if page.locator(f".form-row.field-{name}").is_visible()
    }


@pytest.mark.django_db(transaction=True)
def test_choosing_gpt_live_hides_its_unused_settings(chromium_missing, live_server, make_user):
    from playwright.sync_api import sync_playwright

    from agents import services

    make_user("agents.view_agent", "agents.change_agent", username="lead", is_staff=True)
    agent = services.agent_create(
        fields={"name": "Sales", "slug": "sales", "instructions": "Be brief.",
                "vad_threshold": 0.8, "transcription_model": "whisper-1"},
    )  # fmt: skip
    change = f"/admin/agents/agent/{agent.pk}/change/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.goto(f"{live_server.url}/admin/login/?next={change}")
            page.fill("#id_username", "lead")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{live_server.url}{change}")
            every = {*catalog.REALTIME_ONLY_FIELDS, "max_call_minutes"}
            assert _visible_rows(page) == every

            page.select_option("#id_backend", "gpt-live")
            assert _visible_rows(page) == {"max_call_minutes"}
            assert page.input_value("#id_model") == "gpt-live-1.1"
            assert page.locator("#id_model option[value=gpt-realtime]").is_disabled()
            assert page.locator("#id_turn_detection").is_disabled()
            page.select_option("#id_voice", "gleam")

            # Back and forth: the Realtime API's rows come back, with a model of theirs.
            page.select_option("#id_backend", "realtime")
            assert _visible_rows(page) == every
            assert (page.input_value("#id_model"), page.input_value("#id_voice")) == (
                "gpt-realtime",
                "alloy",
            )
            page.select_option("#id_backend", "gpt-live")
            page.select_option("#id_voice", "gleam")
            page.click("input[name=_continue]")
            page.wait_for_load_state()
            assert "was changed successfully" in page.content()
            # Saved as GPT-Live: the page opens with the rows hidden.
            assert _visible_rows(page) == {"max_call_minutes"}
        finally:
            browser.close()
    agent = Agent.objects.get(pk=agent.pk)
    assert (agent.backend, agent.model, agent.voice, agent.version) == (
        "gpt-live",
        "gpt-live-1.1",
        "gleam",
        2,
    )
    assert (agent.vad_threshold, agent.transcription_model) == (0.8, "whisper-1")
