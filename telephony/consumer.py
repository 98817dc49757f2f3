"""WS /streams: Twilio's media stream. Thin: checks who is calling, then hands every frame to
the call's CallBridge.

Speed (ARCHITECTURE.md, "Speed facts"): this consumer touches no database and uses no channel
layer, so it skips what Channels does per message for consumers that do: `dispatch` calls the
handler directly instead of first awaiting `aclose_old_connections()` (a thread-pool round trip
per frame, a quarter of the CPU at 100 calls), and no layer channel is created per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from audio.recorder import CallRecorder
from realtime.bridge import ACTIVE_BRIDGES, CallBridge, OutboundPlan
from realtime.client import OpenAIRealtimeSession
from realtime.configuration import environment_agent_config, realtime_settings
from realtime.lifecycle import SHUTDOWN_REASON, RecordingLease, recording_path
from realtime.live.session import OpenAILiveSession
from realtime.model import AgentConfig, ContextProvider, ModelSession
from realtime.store import CallStore, call_stream_claim
from telephony import messages as tw
from telephony.security import (
    account_sid_allowed,
    signature_valid,
    signatures_enforced,
    stream_token_valid,
    stream_url,
)
from telephony.twiml import CALL_ID_PARAMETER, TOKEN_PARAMETER

logger = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
# uvicorn closes open WebSockets with 1012 (service restart) when it is told to stop.
SERVICE_RESTART = 1012
# Twilio sends 50 media frames a second, a mark echo per agent chunk and the odd event. A budget
# of 250 a second with bursts of 500 leaves room for network bunching and stops a flood from
# one connection eating the event loop every other call shares.
FRAMES_PER_S = 250
FRAMES_BURST = 500
FLOOD_CLOSE_AFTER = 1000
CLOSED_WITHOUT_STOP = "media stream closed without stop"
# Calls this process has bridged (call id -> when), kept while their stream token is valid.
BRIDGED_CALLS: dict[str, float] = {}


class FrameBudget:
    """A token bucket: `take` costs one frame; tokens refill at `rate` up to `burst`."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def default_model_factory(context: ContextProvider, agent: AgentConfig) -> ModelSession:
    """The agent's backend: GPT-Live or the Realtime API."""
    if agent.backend == "gpt-live":
        return OpenAILiveSession(
            realtime_settings(agent),
            context,
            backend_model=settings.LIVE_BACKEND_MODEL,
            renew_before_s=settings.LIVE_RENEW_BEFORE_EXPIRY_S,
            ping_interval_s=settings.REALTIME_PING_INTERVAL_S,
            ping_timeout_s=settings.REALTIME_PING_TIMEOUT_S,
        )
    return OpenAIRealtimeSession(
        realtime_settings(agent),
        context,
        ping_interval_s=settings.REALTIME_PING_INTERVAL_S,
        ping_timeout_s=settings.REALTIME_PING_TIMEOUT_S,
    )


class MediaStreamConsumer(AsyncWebsocketConsumer):
    # An alias with no configuration makes Channels skip the layer for this consumer.
    channel_layer_alias = "media-streams-use-no-layer"
    model_factory = staticmethod(default_model_factory)

    bridge: CallBridge | None = None
    _start_timer: asyncio.TimerHandle | None = None
    _closed = False
    _frames_over_budget = 0
    _end_reason = CLOSED_WITHOUT_STOP

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._budget = FrameBudget(FRAMES_PER_S, FRAMES_BURST)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """AsyncConsumer.__call__ minus Channels' `await_many_dispatch`, which wraps every
        `receive()` in a new Task and an `asyncio.wait` so it can also listen to a channel layer.
        This consumer has no layer (see `channel_layer_alias`), so one plain loop does the same
        job; at 100 calls that wrapper cost about a tenth of the process's CPU."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            while True:
                await self.dispatch(await receive())

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.receive":
            # Nearly every message is a frame: skip the handler-name lookup for those.
            await self.websocket_receive(message)
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for {message['type']}")
        await handler(message)

    # --- TwilioSocket for the bridge ------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        if self._closed:
            return
        try:
            await self.base_send({"type": "websocket.send", "text": text})
        except OSError:
            # The caller's side is gone (uvicorn raises ClientDisconnected, an OSError); the
            # websocket.disconnect that follows ends the call. Nothing to send to any more.
            self._closed = True

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        await super().close(code=code if code is not None else 1000)

    # --- handshake ------------------------------------------------------------------------------

    def _upgrade_signature_ok(self) -> bool:
        headers = dict(self.scope.get("headers", []))
        signature = headers.get(b"x-twilio-signature", b"").decode("latin-1")
        query = self.scope.get("query_string", b"").decode("latin-1")
        url = stream_url() + (f"?{query}" if query else "")
        return signature_valid(url, {}, signature)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        await self.accept()
        if signatures_enforced() and not self._upgrade_signature_ok():
            logger.warning("media stream refused: bad or missing X-Twilio-Signature")
            await self.close(POLICY_VIOLATION)
            return
        loop = asyncio.get_running_loop()
        # Twilio sends `connected` and `start` right after the upgrade; a peer that does not
        # is not Twilio, and must not hold a socket open.
        self._start_timer = loop.call_later(
            settings.STREAM_START_TIMEOUT_S, lambda: asyncio.ensure_future(self._start_timed_out())
        )

    async def _start_timed_out(self) -> None:
        if self.bridge is None and not self._closed:
            logger.warning(
                "media stream closed: no valid start within %.0f s", settings.STREAM_START_TIMEOUT_S
            )
            await self.close(POLICY_VIOLATION)

    # --- frames ---------------------------------------------------------------------------------

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if not self._budget.take(time.monotonic()):
            await self._over_budget()
            return
        text = message.get("text")
        bridge = self.bridge
        if bridge is not None:
            if text is not None:
                await bridge.on_twilio_text(text)
            else:
                bridge.measures.frames_malformed += 1
            return
        if text is not None and not self._closed:
            await self._before_start(text)

    async def _over_budget(self) -> None:
        """Frames past the per-connection rate are dropped; a sustained flood is cut off."""
        self._frames_over_budget += 1
        if self._frames_over_budget == 1:
            logger.warning("media stream over %d frames/s; dropping the excess", FRAMES_PER_S)
        if self._frames_over_budget >= FLOOD_CLOSE_AFTER and not self._closed:
            logger.warning("media stream closed: %d frames over budget", self._frames_over_budget)
            self._end_reason = "media stream closed: frame flood"
            await self.close(POLICY_VIOLATION)

    async def _before_start(self, text: str) -> None:
        try:
            message = tw.parse_message(text)
        except tw.MalformedMessage as exc:
            logger.warning("malformed frame before start ignored: %s", exc)
            return
        if not isinstance(message, tw.Start):
            return  # `connected` (or stray frames) before `start`
        call_id = message.custom_parameters.get(CALL_ID_PARAMETER, "")
        token = message.custom_parameters.get(TOKEN_PARAMETER, "")
        # An inbound call's token names its CallSid; an outbound call's cannot (it is signed
        # before Twilio assigns one), and the claim below checks the CallSid on the record.
        if not call_id or not (
            stream_token_valid(call_id, message.call_sid, token)
            or stream_token_valid(call_id, "", token)
        ):
            logger.warning("media stream refused: bad stream token for %s", message.call_sid)
            await self.close(POLICY_VIOLATION)
            return
        if not account_sid_allowed(message.account_sid):
            logger.warning("media stream refused: another account (%s)", message.account_sid)
            await self.close(POLICY_VIOLATION)
            return
        snapshot = await self._claim_first_stream(call_id, message.stream_sid, message.call_sid)
        if snapshot is None:
            logger.warning("media stream refused: call %s already had its stream", call_id)
            await self.close(POLICY_VIOLATION)
            return
        if self._start_timer is not None:
            self._start_timer.cancel()
        await self._bridge_call(
            call_id, message, _agent_of(snapshot), OutboundPlan.from_snapshot(snapshot)
        )

    async def _claim_first_stream(
        self, call_id: str, stream_sid: str, call_sid: str
    ) -> dict[str, Any] | None:
        """The call's agent snapshot, or None: a call is bridged once, ever. Its token stays
        valid for minutes after the call has ended, so a replayed `start` must not open a
        second bridge (here or in a sibling process). This process remembers its calls; the
        database settles the rest."""
        now = time.monotonic()
        for known, at in list(BRIDGED_CALLS.items()):
            if now - at > settings.STREAM_TOKEN_TTL_S:
                del BRIDGED_CALLS[known]  # its token has expired: nothing left to refuse
        if call_id in BRIDGED_CALLS:
            return None
        BRIDGED_CALLS[call_id] = now
        return await call_stream_claim(call_id=call_id, stream_sid=stream_sid, call_sid=call_sid)

    async def _bridge_call(
        self, call_id: str, start: tw.Start, agent: AgentConfig, outbound: OutboundPlan | None
    ) -> None:
        try:
            lease = RecordingLease(call_id)
        except OSError:
            # Another process is bridging this call already (the same stream connected twice).
            logger.warning("media stream refused: call %s is bridged elsewhere", call_id)
            await self.close(POLICY_VIOLATION)
            return
        bridge = CallBridge(
            call_id=call_id,
            start=start,
            twilio=self,
            model_factory=self.model_factory,
            agent=agent,
            recorder=CallRecorder(recording_path(call_id)),
            store=CallStore(call_id),
            lease=lease,
            outbound=outbound,
        )
        self.bridge = bridge
        ACTIVE_BRIDGES[call_id] = bridge
        await bridge.start()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self._closed = True
        if self._start_timer is not None:
            self._start_timer.cancel()
        bridge = self.bridge
        if bridge is not None:
            if message.get("code") == SERVICE_RESTART:
                self._end_reason = SHUTDOWN_REASON
            # The caller's side closing is a hang-up: their last words still get transcribed.
            hung_up = self._end_reason == CLOSED_WITHOUT_STOP
            await bridge.end(self._end_reason, settle=hung_up)
            ACTIVE_BRIDGES.pop(bridge.call_id, None)
        raise StopConsumer


def _agent_of(snapshot: dict[str, Any]) -> AgentConfig:
    """The configuration the call was answered with; the environment's when it has none (the
    database could not be read at the stream's start)."""
    if snapshot.get("agent"):
        return AgentConfig.from_dict(snapshot["agent"])
    return environment_agent_config()
