"""End-to-end harness (tests/e2e): the real app served by uvicorn on loopback, the realtime
stand-in, the Twilio REST stand-in and the simulated Twilio caller, all speaking their real
protocols over real sockets.

Each `LiveBridge.run` starts a fresh realtime stand-in (both protocols) and a fresh Twilio REST
stand-in, points the server at them (OPENAI_REALTIME_URL and OPENAI_LIVE_URL,
TWILIO_API_BASE_URL) and gives the simulated caller the REST stand-in, so it acts on the
server's REST requests as Twilio does. Scenarios reach the REST
stand-in as `live_bridge.twilio_rest` (and `CallRun.twilio_rest`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bridge_project.config import STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN
from simulator.openai.standin import RealtimeStandIn
from simulator.twilio.caller import CallReport, HangUp, SimulatedTwilioCaller
from simulator.twilio.rest import TwilioRestStandIn

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC_BASE_URL = "https://bridge.example.test"
T = TypeVar("T")


@dataclass
class CallRun:
    report: CallReport
    caller: SimulatedTwilioCaller
    standin: RealtimeStandIn
    twilio_rest: TwilioRestStandIn | None = None


@dataclass
class LiveBridge:
    url: str
    settings: Any
    storage_root: Path
    # The Twilio REST stand-in of the run in progress (None between runs).
    twilio_rest: TwilioRestStandIn | None = None

    def rest_accounts(self) -> dict[str, str]:
        """The accounts the REST stand-in accepts: the product's own, when the test gives it
        one, and the stand-in's (what the product uses without one)."""
        accounts = {STANDIN_ACCOUNT_SID: STANDIN_AUTH_TOKEN}
        if self.settings.TWILIO_ACCOUNT_SID and self.settings.TWILIO_AUTH_TOKEN:
            accounts[self.settings.TWILIO_ACCOUNT_SID] = self.settings.TWILIO_AUTH_TOKEN
        return accounts

    def run(
        self,
        scenario: Callable[[RealtimeStandIn, SimulatedTwilioCaller], Awaitable[T]],
        *,
        standin: dict[str, Any] | None = None,
        rest: dict[str, Any] | None = None,
    ) -> T:
        """Run `scenario(stand-in, caller)` with a fresh realtime stand-in and Twilio REST
        stand-in (`self.twilio_rest` meanwhile; `rest`: its options) the server is pointed at."""

        async def main() -> T:
            rest_options = {"accounts": self.rest_accounts(), **(rest or {})}
            async with (
                RealtimeStandIn(**(standin or {})) as model,
                TwilioRestStandIn(**rest_options) as twilio_rest,
            ):
                self.settings.OPENAI_REALTIME_URL = model.url
                self.settings.OPENAI_LIVE_URL = model.live_url
                self.settings.TWILIO_API_BASE_URL = twilio_rest.url
                self.twilio_rest = twilio_rest
                caller = SimulatedTwilioCaller(
                    self.url,
                    auth_token=AUTH_TOKEN,
                    public_base_url=PUBLIC_BASE_URL,
                    account_sid=self.settings.TWILIO_ACCOUNT_SID or None,
                    twilio_rest_url=twilio_rest.url,
                )
                async with asyncio.timeout(90):
                    result = await scenario(model, caller)
                # The service outlives a hang-up: the bridge finishes the call (the caller's
                # last words are still being transcribed) and then closes its model socket.
                with contextlib.suppress(TimeoutError):
                    await model.wait_until(lambda: not _sessions_open(model), 10.0)
                return result

        try:
            return asyncio.run(main())
        finally:
            self.twilio_rest = None

    def place_call(
        self,
        script: list,
        *,
        standin: dict[str, Any] | None = None,
        rest: dict[str, Any] | None = None,
        during: Callable[[RealtimeStandIn, SimulatedTwilioCaller], Awaitable[None]] | None = None,
        hang_up: HangUp = "stop",
        max_seconds: float = 60.0,
    ) -> CallRun:
        """One call through the whole product; `during` runs beside it (fault injection)."""

        async def scenario(model: RealtimeStandIn, caller: SimulatedTwilioCaller) -> CallRun:
            side = asyncio.create_task(during(model, caller)) if during else None
            report = await caller.call(script, hang_up=hang_up, max_seconds=max_seconds)
            if side is not None:
                await side
            return CallRun(
                report=report, caller=caller, standin=model, twilio_rest=self.twilio_rest
            )

        return self.run(scenario, standin=standin, rest=rest)


def _sessions_open(model: RealtimeStandIn) -> bool:
    """Whether the bridge still holds a model session open (either protocol)."""
    return bool(model.open_connections()) or any(not c.closed for c in model.live_connections)


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, what: str = "") -> Any:
    """Poll until predicate() is truthy (finalization runs after the socket closes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")


def finished_call(call_id: str | None, timeout_s: float = 20.0):
    """The Call once the bridge has finalized it (recording stored, status closed)."""
    from calls.models import Call

    assert call_id, "the call never got an id (webhook failed?)"

    def done() -> Call | None:
        call = Call.objects.filter(pk=call_id).first()
        if call is None or call.status not in ("completed", "failed") or call.ended_at is None:
            return None
        return call

    return wait_for(done, timeout_s, f"call {call_id} to be finalized")


@dataclass
class CallRows:
    transcripts: list
    analytics: Any
    recording: Any
    recording_path: str | None


def call_rows(call) -> CallRows:
    from django.core.files.storage import default_storage

    recording = call.recordings.first()
    return CallRows(
        transcripts=list(call.transcripts.order_by("start_ms", "sequence")),
        analytics=call.analytics,
        recording=recording,
        recording_path=default_storage.path(recording.file.name) if recording else None,
    )
