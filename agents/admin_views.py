"""The back-office's "Place a test call": a simulated Twilio caller dials the agent's number on
this very server, so staff hear (and then read, on the call page) what a caller would get.

Development and test only (settings.DJANGO_ENV != "production"): the simulator is a development
tool and the product never imports it otherwise, so it is imported here, when a test call is
placed. The call runs the standard script (two caller turns, no barge-in) in a thread of its
own with its own event loop; the page waits only until the incoming-call webhook has answered
(the call then exists) and opens the call's page, where the call goes on live.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

# How long the page waits for the webhook to answer before it says the call did not start.
TEST_CALL_ANSWER_WAIT_S = 10.0
# A test call that is still going after this long is hung up (the script takes ~15 s).
TEST_CALL_MAX_S = 120.0


class PlaceCallFailed(Exception):
    """The test call did not start; the message says why, for the staff member."""


@dataclass
class PlacedCall:
    caller: Any  # realtime.simulator.caller.SimulatedTwilioCaller
    thread: threading.Thread | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def call_id(self) -> str | None:
        return self.caller.call_id


# Test calls placed by this process, newest last (tests wait for them; nothing else reads it).
PLACED: list[PlacedCall] = []
_PLACED_KEPT = 20


def may_place_test_calls() -> bool:
    return settings.DJANGO_ENV != "production"


def _run(test_call: PlacedCall) -> None:
    from realtime.simulator.script import standard_call

    try:
        asyncio.run(
            test_call.caller.call(standard_call(barge_in=False), max_seconds=TEST_CALL_MAX_S)
        )
    except Exception as exc:  # reported to the waiting page, or logged if it has gone
        test_call.error = exc
        logger.warning("test call %s failed: %s", test_call.caller.call_sid, exc)
    finally:
        test_call.done.set()


def _reason(test_call: PlacedCall) -> str:
    if test_call.error is not None:
        return f"the call did not start: {test_call.error}"
    if test_call.done.is_set():
        return "the call ended before the webhook answered"
    return f"the webhook did not answer within {TEST_CALL_ANSWER_WAIT_S:g} s"


def place_test_call(
    *, server_url: str, to_number: str, wait_s: float = TEST_CALL_ANSWER_WAIT_S
) -> str:
    """Dial `to_number` on the server at `server_url` as Twilio would; the new call's id once
    the webhook has answered. Raises PlaceCallFailed when it does not within `wait_s`."""
    from realtime.simulator.caller import SimulatedTwilioCaller

    caller = SimulatedTwilioCaller(
        server_url,
        to_number=to_number,
        # Signed as Twilio signs, for the URL the server checks signatures against.
        auth_token=settings.TWILIO_AUTH_TOKEN or None,
        public_base_url=settings.PUBLIC_BASE_URL,
        account_sid=settings.TWILIO_ACCOUNT_SID or None,
    )
    test_call = PlacedCall(caller=caller)
    test_call.thread = threading.Thread(
        target=_run, args=(test_call,), name=f"test-call-{caller.call_sid}", daemon=True
    )
    test_call.thread.start()
    PLACED.append(test_call)
    del PLACED[:-_PLACED_KEPT]
    deadline = time.monotonic() + wait_s
    while test_call.call_id is None and time.monotonic() < deadline:
        if test_call.done.wait(0.05):
            break
    if test_call.call_id is None:
        raise PlaceCallFailed(_reason(test_call))
    return test_call.call_id
