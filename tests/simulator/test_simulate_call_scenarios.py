"""`manage.py simulate_call` and Twilio's REST API: it finds the REST stand-in the server uses
(or runs one), and `--scenario end_call|transfer|webhook` shows a tool end to end with a demo
agent (issue 22)."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from support import base_env, free_port, manage, running_process, uvicorn_command, wait_for_http

from agents.tools import validate_tools
from simulator import scenarios
from simulator.management.commands import simulate_call
from simulator.management.commands.simulate_call import Command, loopback_http_port
from simulator.twilio.rest import TwilioRestStandIn

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"


def test_loopback_http_port_reads_only_local_http_urls():
    assert loopback_http_port("http://127.0.0.1:8766") == 8766
    assert loopback_http_port("http://localhost") == 80
    assert loopback_http_port("https://api.twilio.com") is None
    assert loopback_http_port("http://10.0.0.5:8766") is None


@pytest.mark.django_db
def test_demo_agents_are_made_once_and_kept_up_to_date():
    made = {
        name: scenarios.ensure_demo_agent(scenario, webhook_url="http://127.0.0.1:8767/orders")
        for name, scenario in scenarios.SCENARIOS.items()
    }
    for name, agent in made.items():
        scenario = scenarios.SCENARIOS[name]
        assert agent.slug == scenario.slug
        assert list(agent.phone_numbers.values_list("number", flat=True)) == [scenario.number]
        validate_tools(agent.tools)  # what the admin and the API accept
    assert [t["type"] for a in made.values() for t in a.tools] == [
        "end_call",
        "transfer_call",
        "webhook",
    ]
    again = scenarios.ensure_demo_agent(scenarios.SCENARIOS["end_call"], webhook_url="")
    assert again.version == made["end_call"].version  # nothing changed: no new version
    moved = scenarios.ensure_demo_agent(
        scenarios.SCENARIOS["webhook"], webhook_url="http://127.0.0.1:9999/orders"
    )
    assert moved.tools[0]["url"] == "http://127.0.0.1:9999/orders"
    assert moved.version == made["webhook"].version + 1


@pytest.mark.django_db
def test_a_scenario_is_for_development_only(settings):
    settings.DJANGO_ENV = "production"
    with pytest.raises(CommandError, match="development only"):
        call_command("simulate_call", "--scenario", "end_call", "--url", "http://127.0.0.1:9")
    settings.DJANGO_ENV = "development"
    with pytest.raises(CommandError, match="leave out --agent"):
        call_command(
            "simulate_call", "--scenario", "end_call", "--agent", "x", "--url", "http://127.0.0.1:9"
        )


async def test_the_rest_stand_in_is_found_or_run(settings, monkeypatch):
    command = Command()
    settings.TWILIO_ACCOUNT_SID = ""
    settings.TWILIO_API_BASE_URL = "https://api.twilio.com"
    monkeypatch.setenv("TWILIO_STANDIN_PORT", str(free_port()))
    # Twilio's API and no make-run stand-in listening: the caller does without.
    assert command._rest_standin(None) == (None, None)
    async with TwilioRestStandIn() as running:
        # make run's stand-in, found on its port.
        monkeypatch.setenv("TWILIO_STANDIN_PORT", str(running.port))
        assert command._rest_standin(None) == (running.url, None)
        # A loopback URL where one listens is used as it is.
        settings.TWILIO_API_BASE_URL = running.url + "/"
        assert command._rest_standin(None) == (running.url, None)
    # A loopback URL where nothing listens gets a stand-in run for the call.
    port = free_port()
    url, standin = command._rest_standin(f"http://127.0.0.1:{port}")
    assert url == f"http://127.0.0.1:{port}" and standin is not None
    assert standin.requested_port == port
    # A stand-in elsewhere is used as it is.
    assert command._rest_standin("http://10.0.0.5:8766/") == ("http://10.0.0.5:8766", None)
    # A real account: make run's stand-in is not looked for.
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.TWILIO_API_BASE_URL = "https://api.twilio.com"
    assert command._rest_standin(None) == (None, None)


async def test_the_demo_webhook_records_and_answers():
    async with scenarios.WebhookServer() as server:

        def post() -> bytes:
            request = urllib.request.Request(
                server.url,
                data=b'{"tool": "check_order"}',
                headers={"Content-Type": "application/json", "X-Bridge-Signature": "t=1,v1=ab"},
            )
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.read()

        body = await asyncio.to_thread(post)
    assert orjson.loads(body) == scenarios.WEBHOOK_ANSWER
    [received] = server.requests
    assert (received.method, received.path) == ("POST", "/orders")
    assert received.headers["x-bridge-signature"] == "t=1,v1=ab"
    assert received.json() == {"tool": "check_order"}


@pytest.mark.django_db
def test_the_caller_gets_the_rest_stand_in(monkeypatch, settings):
    """simulate_call hands the REST stand-in's URL to the simulated caller."""
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:1"
    seen: dict[str, object] = {}

    class Caller:
        def __init__(self, url: str, **options: object) -> None:
            seen.update(options)
            self.webhook_params = {"To": "+1", "From": "+2"}

        async def call(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("no Twilio REST stand-in at http://127.0.0.1:1: refused")

    monkeypatch.setattr(simulate_call, "SimulatedTwilioCaller", Caller)
    monkeypatch.setattr(Command, "_check_server", lambda self, url: None)
    monkeypatch.setattr(Command, "_standin", lambda self, port: None)
    monkeypatch.setattr(Command, "_rest_standin", lambda self, url: (url or "http://x", None))
    with pytest.raises(CommandError, match="no Twilio REST stand-in"):
        call_command(
            "simulate_call", "--url", "http://127.0.0.1:9", "--twilio-rest-url", "http://r"
        )
    assert seen["twilio_rest_url"] == "http://r"


# --- end to end: a served bridge, the command, both stand-ins ---------------------------------


def scenario_run(tmp_path: Path, scenario: str) -> str:
    """`simulate_call --scenario` against a real server whose model and Twilio REST API are the
    stand-ins the command runs; the command's output."""
    port, standin_port, rest_port = free_port(), free_port(), free_port()
    env = base_env(
        DJANGO_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3",
        RECORDING_STORAGE_PATH=str(tmp_path / "recordings"),
        PORT=str(port),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TOOL_WEBHOOK_SECRET="demo-webhook-secret",
        OPENAI_REALTIME_URL=f"ws://127.0.0.1:{standin_port}/v1/realtime",
        TWILIO_API_BASE_URL=f"http://127.0.0.1:{rest_port}",
    )
    assert manage(env, "migrate", "--noinput", "-v0").returncode == 0
    log = tmp_path / "server.log"
    with running_process(uvicorn_command(port), env, log) as server:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, deadline_s=30)
        result = manage(env, "simulate_call", "--scenario", scenario, timeout=120)
    output = result.stdout
    assert result.returncode == 0, result.stderr + output + log.read_text()[-3000:]
    assert f"Twilio REST stand-in running at http://127.0.0.1:{rest_port}" in output
    return output


@pytest.mark.slow
def test_the_end_call_scenario_hangs_up_through_the_rest_api(tmp_path: Path):
    output = scenario_run(tmp_path, "end_call")
    assert "demo agent demo-end-call (+15550001001), tools: end_call" in output
    assert "ended by twilio" in output, output
    assert re.search(
        r"POST /2010-04-01/Accounts/AC0{32}/Calls/CA[0-9a-f]{32}\.json  Status=completed  -> 200",
        output,
    ), output
    assert "Twilio stopped the media stream" in output


@pytest.mark.slow
def test_the_transfer_scenario_redirects_with_dial_and_a_whisper(tmp_path: Path):
    output = scenario_run(tmp_path, "transfer")
    assert "ended by twilio" in output, output
    # Closed by Twilio's status callback, as a transferred call is.
    assert "server's record (completed, transferred to support)" in output, output
    redirect = re.search(r"redirected to: (.*)", output)
    assert (
        redirect is not None
        and "<Dial" in redirect.group(1)
        and "+15550003333" in redirect.group(1)
    ), output
    # Warm: the person hears the summary before being connected (our signed whisper URL).
    assert re.search(r"whisper to \+15550003333 before connecting: (<\?xml|<Response)", output), (
        output
    )


@pytest.mark.slow
def test_the_webhook_scenario_calls_the_webhook_signed(tmp_path: Path):
    output = scenario_run(tmp_path, "webhook")
    assert "webhook request received: POST /orders" in output, output
    assert re.search(r"X-Bridge-Signature: t=\d+,v1=[0-9a-f]{64}", output), output
    body = re.search(r"    body: (.*)", output)
    assert body is not None and '"order_number":"427"' in body.group(1).replace(" ", ""), output
    assert "tool call check_order (ok)" in output, output
