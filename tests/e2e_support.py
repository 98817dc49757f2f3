"""End-to-end harness (tests/e2e): the real app served by uvicorn on loopback, the realtime
stand-in and the simulated Twilio caller, all speaking their real protocols over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from realtime.simulator.caller import CallReport, HangUp, SimulatedTwilioCaller
from realtime.simulator.standin import RealtimeStandIn

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC_BASE_URL = "https://bridge.example.test"
T = TypeVar("T")


@dataclass
class CallRun:
    report: CallReport
    caller: SimulatedTwilioCaller
    standin: RealtimeStandIn


@dataclass
class LiveBridge:
    url: str
    settings: Any
    storage_root: Path

    def run(
        self,
        scenario: Callable[[RealtimeStandIn, SimulatedTwilioCaller], Awaitable[T]],
        *,
        standin: dict[str, Any] | None = None,
    ) -> T:
        """Run `scenario(stand-in, caller)` with a fresh stand-in the server is pointed at."""

        async def main() -> T:
            async with RealtimeStandIn(**(standin or {})) as model:
                self.settings.OPENAI_REALTIME_URL = model.url
                caller = SimulatedTwilioCaller(
                    self.url, auth_token=AUTH_TOKEN, public_base_url=PUBLIC_BASE_URL
                )
                async with asyncio.timeout(90):
                    result = await scenario(model, caller)
                # The service outlives a hang-up: the bridge finishes the call (the caller's
                # last words are still being transcribed) and then closes its model socket.
                with contextlib.suppress(TimeoutError):
                    await model.wait_until(lambda: not model.open_connections(), 10.0)
                return result

        return asyncio.run(main())

    def place_call(
        self,
        script: list,
        *,
        standin: dict[str, Any] | None = None,
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
            return CallRun(report=report, caller=caller, standin=model)

        return self.run(scenario, standin=standin)


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
