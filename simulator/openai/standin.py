"""A local stand-in for the OpenAI Realtime service, speaking the GA protocol (and the beta one).

It is what `make run` bridges calls to in development without an OPENAI_API_KEY, and the model
side of the end-to-end tests. It behaves like the service wherever the bridge can tell:

* the handshake needs `Authorization: Bearer <key>` and a `model` query parameter; the header
  `OpenAI-Beta: realtime=v1` selects the beta protocol, as it does on the real endpoint;
* caller audio is decoded in the session's input format and fed to an energy server VAD on the
  model's own input-audio clock (ms of audio appended), which emits speech_started/stopped,
  commits the turn and starts a response; `speech_stopped.audio_end_ms` includes the silence
  that closed the turn (`silence_duration_ms`), as the service's does;
* with the service's timing: the turn's transcription (the next scripted caller line, when the
  session asks for transcription) runs beside the response and lands 0.3-1.5 s after the
  commit, usually after `response.created`, streamed as `...transcription.delta`s; now and then
  it fails instead (`...transcription.failed`); `response.created` comes 50-150 ms after
  speech_stopped and the first audio 250-600 ms after that;
* a response streams scripted speech faster than real time, as the service does, so the bridge
  must pace playback itself, in deltas that are not whole milliseconds; speech while it streams
  cancels it (`interrupt_response`); a reply cut short (so, or by response.cancel) gets no
  transcript.done: its transcript comes only in output_item.done and response.done;
* a client `input_audio_buffer.commit` ends a turn the VAD has open (no speech_stopped follows)
  and, as the docs say, creates no response;
* a client `response.create` starts a reply at any time, before any caller audio too (the agent
  speaks first). Its `response` is checked as the service checks it (an unknown field is an
  `unknown_parameter` error naming it); `conversation: "none"` (out of band) is refused as
  unsupported. A stand-in cannot follow free text, so **a reply asked for with `instructions`
  says exactly their first passage in double quotes** ("..." or curly quotes), with speech of
  0.35 s a word (at least 0.8 s); instructions without one get the next scripted reply. Only
  scripted replies move the script on: after a quoted greeting the caller's first turn still
  gets the first scripted reply. `metadata` comes back in the response, as on the service;
* `turn_detection.idle_timeout_ms` (GA, server_vad only, as on the service): the timeout counts
  on the input-audio clock from where the last response's audio ends playing (response.done
  plus the audio still to play at real time, as the stand-in streams faster); with no speech
  by then, `input_audio_buffer.timeout_triggered` (the silent span), the silence committed as
  an input_audio item (its transcription completes with ""), and a re-prompt reply
  (`reprompt_lines`, cycling). It is armed again only by the next response's playback;
* session.update checks turn detection, noise reduction and transcription fields against the
  SDK's types (unknown fields, bad values and types are refused as the service words it);
  `semantic_vad` ends turns on silence like server_vad, after 300/500/1000 ms for eagerness
  high / medium or auto / low (`simulator.openai.vad`); noise reduction and the
  transcription language are kept in the session, and change nothing else;
* usage counts the previous response's input as cached, split text/audio
  (`cached_tokens_details`, GA);
* truncating past the end of an item, or cancelling when no response is in progress, fails
  with the service's wording, so the bridge meets the same benign errors as in production;
* faults for tests: refused handshakes, immediate closes, dropped sockets, `session_expired`
  then close 1001, and stalls (no bytes either way, socket left open);
* tools (`simulator.openai.tools` has the rules): session.update's and response.create's
  `tools` and `tool_choice` are checked against the SDK's types (function tools; GA MCP
  servers); a caller turn may be answered with tool calls, scripted
  (`tool_calls=[ScriptedToolCall(...)]`) or by the default policy (each offered function tool
  once, end_call and transfer_call last), streamed as the service streams them
  (`response.output_item.added`, `response.function_call_arguments.delta`s and `.done`,
  `response.output_item.done`, then `response.done` with the function_call items in its
  output, after the spoken line if the call says one first). The client answers with
  `conversation.item.create` function_call_output items and `response.create`: the stand-in
  then says `tool_reply` (or the call's `reply_after`). Every output is kept
  (`function_outputs`); a `response.create` while a call of the previous response has no
  output yet, or an output for an unknown call_id (also refused with an error, as the service
  does), is listed in `protocol_problems`. An MCP server's tools are called by the service
  itself: `response.mcp_call_arguments.*`, `response.mcp_call.in_progress` then `.completed`
  or `.failed`, the `mcp_call` item with its output or error, and the reply goes on in the
  same response; offering an MCP server lists its tools (an `mcp_list_tools` item).

Every client event, every appended audio byte and every truncation is kept per connection.
Randomness (delays, failures, chunk sizes) comes from per-connection generators seeded by
`seed` and the connection's index, so runs repeat exactly.

**GPT-Live** is served by the same server on its own path, `/v1/live/sessions`
(`simulator.openai.live.connection` has what it promises): `Authorization: Bearer` and no query
string; the session (`LiveConnection`, in `live_connections`) shares the scripted replies,
caller lines, tool script, echo mode, seed and faults with the Realtime sessions, and takes its
own timing from `live=LiveOptions(...)`.

Run standalone: `python -m simulator.openai.standin --port 8765` (`--help` for the timing
flags: `--seed`, `--transcription-delay LOW HIGH`, `--transcription-failure-rate`,
`--response-delay LOW HIGH`, `--first-audio-delay LOW HIGH`, `--even-chunks`,
`--reprompt-line TEXT`; and `--no-tool-calls`, `--tool-reply TEXT`; GPT-Live's
`--live-chunk-ms`, `--live-reply-delay LOW HIGH`, `--live-session-limit`,
`--live-usage-interval`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from simulator.observed import Observed
from simulator.openai import protocol as rt
from simulator.openai.connection import Faults, ReceivedEvent, StandInConnection
from simulator.openai.live import protocol as lp
from simulator.openai.live.connection import LiveConnection, LiveOptions
from simulator.openai.protocol import Reply
from simulator.openai.timing import Delay, delay_range
from simulator.openai.tools import DEFAULT_TOOL_REPLY, ScriptedToolCall

__all__ = [
    "DEFAULT_CALLER_LINES",
    "DEFAULT_PORT",
    "DEFAULT_REPLIES",
    "DEFAULT_REPROMPT_LINES",
    "Faults",
    "Handshake",
    "LiveConnection",
    "LiveOptions",
    "RealtimeStandIn",
    "ReceivedEvent",
    "Reply",
    "ScriptedToolCall",
    "StandInConnection",
]

DEFAULT_PORT = 8765
# The service's timing, in seconds (low, high), drawn uniformly per turn.
DEFAULT_TRANSCRIPTION_DELAY_S = (0.3, 1.5)  # commit -> ...input_audio_transcription.completed
DEFAULT_RESPONSE_DELAY_S = (0.05, 0.15)  # speech_stopped (or response.create) -> response.created
DEFAULT_FIRST_AUDIO_DELAY_S = (0.25, 0.6)  # response.created -> the first audio delta
DEFAULT_TRANSCRIPTION_FAILURE_RATE = 0.05
DEFAULT_REPLIES: tuple[Reply, ...] = (
    Reply("Hello, thanks for calling. How can I help you today?", 2.4),
    Reply("Sure, I can help with that. Could you tell me a little more about the order?", 3.6),
    Reply("Thanks, I have found it. It left our warehouse yesterday and arrives on Friday.", 3.2),
    Reply("Of course. Is there anything else I can do for you?", 2.2),
)
# What the model says to a caller silent past the session's idle_timeout_ms.
DEFAULT_REPROMPT_LINES: tuple[str, ...] = ("Are you still there?",)
DEFAULT_CALLER_LINES: tuple[str, ...] = (
    "Hi, I would like to check on my order.",
    "It was placed last Tuesday, order number four two seven.",
    "Sorry, one more thing: can I change the delivery address?",
    "No, that is all. Thank you.",
)


@dataclass(frozen=True)
class Handshake:
    """One opening handshake as the stand-in saw it, and the HTTP status it answered."""

    path: str
    headers: dict[str, str]
    status: int
    at: float


class RealtimeStandIn(Observed):
    """The stand-in server: `async with RealtimeStandIn() as standin:`, then `standin.url`.

    Each connection (session) answers with `replies` in turn and transcribes caller turns as
    `caller_lines` in turn, both cycling and both starting over on a new connection; a caller
    silent past the session's `idle_timeout_ms` hears `reprompt_lines` in turn, the same way.
    A reply asked for with instructions quoting a passage says that passage instead (see the
    module's docstring). `speed` is
    how many times faster than real time replies stream (0: no pauses at all). `faults` may be
    replaced at any time and applies to the following handshakes. With `echo`, every appended
    frame comes straight back as a `response.output_audio.delta` instead (no delays, no
    randomness).

    The service's timing, all defaults realistic (delays are seconds, fixed or (low, high)):

    * `transcription_delay_s`: commit to `...input_audio_transcription.completed`;
    * `transcription_failure_rate`: the share of transcriptions that end in `...failed`
      instead (0 for none);
    * `transcription_deltas`: stream `...input_audio_transcription.delta`s before completing;
    * `response_delay_s`: speech_stopped (or response.create) to `response.created`;
    * `first_audio_delay_s`: `response.created` to the first audio delta;
    * `uneven_chunks`: audio deltas vary by a few samples around `chunk_ms`, so they are not
      whole milliseconds (False: exactly `chunk_ms` each, but the last);
    * `seed`: the seed of every random draw, with the connection's index.

    Tools (simulator.openai.tools): `tool_calls` scripts them (None: the default policy; ():
    none ever); `tool_reply` is what the model says once a call's output is back (unless the
    call says `reply_after`); `calls_per_turn` is how many function tools the default policy
    calls in one response; `mcp_delay_s` is how long an MCP server takes to answer.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        replies: Sequence[Reply] = DEFAULT_REPLIES,
        caller_lines: Sequence[str] = DEFAULT_CALLER_LINES,
        reprompt_lines: Sequence[str] = DEFAULT_REPROMPT_LINES,
        speed: float = 4.0,
        chunk_ms: int = 100,
        first_audio_delay_s: Delay = DEFAULT_FIRST_AUDIO_DELAY_S,
        response_delay_s: Delay = DEFAULT_RESPONSE_DELAY_S,
        transcription_delay_s: Delay = DEFAULT_TRANSCRIPTION_DELAY_S,
        transcription_failure_rate: float = DEFAULT_TRANSCRIPTION_FAILURE_RATE,
        transcription_deltas: bool = True,
        uneven_chunks: bool = True,
        seed: int = 0,
        vad_start_ms: int = 100,
        faults: Faults | None = None,
        echo: bool = False,
        tool_calls: Sequence[ScriptedToolCall] | None = None,
        tool_reply: str = DEFAULT_TOOL_REPLY,
        calls_per_turn: int = 1,
        mcp_delay_s: float = 0.2,
        live: LiveOptions | None = None,
    ) -> None:
        if not replies or not caller_lines or not reprompt_lines:
            raise ValueError("replies, caller_lines and reprompt_lines must not be empty")
        if not 0.0 <= transcription_failure_rate <= 1.0:
            raise ValueError("transcription_failure_rate must be between 0 and 1")
        # Checked now, read on each use, so a test may assign new values between turns.
        delay_range(first_audio_delay_s, "first_audio_delay_s")
        delay_range(response_delay_s, "response_delay_s")
        delay_range(transcription_delay_s, "transcription_delay_s")
        self.host = host
        self.requested_port = port
        self.replies = tuple(replies)
        self.caller_lines = tuple(caller_lines)
        self.reprompt_lines = tuple(reprompt_lines)
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.first_audio_delay_s = first_audio_delay_s
        self.response_delay_s = response_delay_s
        self.transcription_delay_s = transcription_delay_s
        self.transcription_failure_rate = transcription_failure_rate
        self.transcription_deltas = transcription_deltas
        self.uneven_chunks = uneven_chunks
        self.seed = seed
        self.vad_start_ms = vad_start_ms
        self.faults = faults or Faults()
        # Echo mode (load tests): each appended frame comes straight back as output audio,
        # with no VAD and no scripted replies, so both directions carry every frame.
        self.echo = echo
        self.tool_calls = tuple(tool_calls) if tool_calls is not None else None
        self.tool_reply = tool_reply
        self.calls_per_turn = calls_per_turn
        self.mcp_delay_s = mcp_delay_s
        self.connections: list[StandInConnection] = []
        # GPT-Live sessions (LIVE_PATH), apart: their state and observations differ.
        self.live = live or LiveOptions()
        self.live_connections: list[LiveConnection] = []
        self.handshakes: list[Handshake] = []
        self._server: Server | None = None
        super().__init__()
        # The handshake attempt number of each accepted connection, set in process_request.
        self._attempts: dict[ServerConnection, int] = {}

    # --- scripted content ---------------------------------------------------------------------

    def reply_for(self, number: int) -> Reply:
        return self.replies[number % len(self.replies)]

    def caller_line(self, number: int) -> str:
        return self.caller_lines[number % len(self.caller_lines)]

    def reprompt_line(self, number: int) -> str:
        return self.reprompt_lines[number % len(self.reprompt_lines)]

    # --- observation --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{rt.REALTIME_PATH}"

    @property
    def live_url(self) -> str:
        return f"ws://{self.host}:{self.port}{lp.LIVE_PATH}"

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    @property
    def truncations(self) -> list[dict[str, Any]]:
        return [t for connection in self.connections for t in connection.truncations]

    @property
    def protocol_problems(self) -> list[str]:
        """What clients got wrong with tools, on every connection (see the module's docstring)."""
        return [p for connection in self.connections for p in connection.protocol_problems]

    @property
    def function_outputs(self) -> list[dict[str, Any]]:
        return [o for connection in self.connections for o in connection.function_outputs]

    def open_connections(self) -> list[StandInConnection]:
        return [c for c in self.connections if not c.closed]

    async def wait_for_connection(
        self, count: int = 1, deadline_s: float = 10.0
    ) -> StandInConnection:
        """The `count`-th accepted connection, once it exists."""
        await self.wait_until(lambda: len(self.connections) >= count, deadline_s)
        return self.connections[count - 1]

    async def wait_for_live_connection(
        self, count: int = 1, deadline_s: float = 10.0
    ) -> LiveConnection:
        """The `count`-th accepted GPT-Live connection, once it exists."""
        await self.wait_until(lambda: len(self.live_connections) >= count, deadline_s)
        return self.live_connections[count - 1]

    # --- live faults --------------------------------------------------------------------------

    async def expire_sessions(self) -> None:
        for connection in self.open_connections():
            await connection.expire()

    async def send_error(self, message: str, *, code: str) -> None:
        """An `error` event on every open connection (the session stays open, as the
        service's request errors do)."""
        for connection in self.open_connections():
            await connection.emit_error(message, code=code)

    async def drop_connections(self) -> None:
        for connection in self.open_connections():
            await connection.drop()

    async def stall_connections(self) -> None:
        for connection in self.open_connections():
            await connection.stall()

    # --- server -------------------------------------------------------------------------------

    async def start(self) -> RealtimeStandIn:
        # No server pings: a stalled connection must look hung, and keepalive is the client's.
        self._server = await serve(
            self._handle,
            self.host,
            self.requested_port,
            process_request=self._check_handshake,
            ping_interval=None,
            max_size=2**24,
        )
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        for connection in [*self.connections, *self.live_connections]:
            if connection.stalled and connection.ws.transport is not None:
                connection.ws.transport.abort()  # a paused transport never finishes closing
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5.0)

    async def __aenter__(self) -> RealtimeStandIn:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        attempt = len(self.handshakes)
        faults = self.faults if self.faults.applies_to(attempt) else None
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        parts = urlsplit(request.path)
        model = (parse_qs(parts.query).get("model") or [""])[0]
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        rejection: tuple[http.HTTPStatus, str, str | None] | None = None
        live = parts.path == lp.LIVE_PATH
        if parts.path not in (rt.REALTIME_PATH, lp.LIVE_PATH):
            rejection = (http.HTTPStatus.NOT_FOUND, f"Invalid URL (GET {parts.path})", None)
        elif not headers.get("authorization", "").startswith("Bearer ") or not bearer:
            rejection = (
                http.HTTPStatus.UNAUTHORIZED,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                "YOUR_KEY).",
                None,
            )
        elif live and parts.query:
            # GPT-Live takes the model in session.start, "with no query parameters".
            rejection = (
                http.HTTPStatus.BAD_REQUEST,
                "GPT-Live takes no query parameters: send the model in session.start.",
                "unknown_parameter",
            )
        elif not model and not live:
            rejection = (
                http.HTTPStatus.BAD_REQUEST,
                "Missing required parameter: 'model'.",
                "missing_required_parameter",
            )
        elif faults is not None and faults.refuse == "handshake":
            rejection = (
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "The server is overloaded (stand-in fault).",
                None,
            )
        self.handshakes.append(
            Handshake(request.path, headers, rejection[0] if rejection else 101, time.monotonic())
        )
        self.notify()
        if rejection is None:
            self._attempts[connection] = attempt
            return None
        return _json_response(connection, *rejection)

    async def _handle(self, ws: ServerConnection) -> None:
        attempt = self._attempts.pop(ws)
        faults = self.faults if self.faults.applies_to(attempt) else None
        request = ws.request
        assert request is not None
        if urlsplit(request.path).path == lp.LIVE_PATH:
            await self._handle_live(ws, faults)
            return
        beta = request.headers.get("OpenAI-Beta", "").strip() == "realtime=v1"
        model = (parse_qs(urlsplit(request.path).query).get("model") or [""])[0]
        connection = StandInConnection(
            self,
            ws,
            index=len(self.connections),
            protocol="beta" if beta else "ga",
            model=model,
            faults=faults,
        )
        self.connections.append(connection)
        self.notify()
        if faults is not None and faults.refuse == "close":
            connection.close_code = 1011
            await ws.close(1011, "stand-in fault: closing at once")
            self.notify()
            return
        await connection.run()

    async def _handle_live(self, ws: ServerConnection, faults: Faults | None) -> None:
        connection = LiveConnection(self, ws, index=len(self.live_connections), faults=faults)
        self.live_connections.append(connection)
        self.notify()
        if faults is not None and faults.refuse == "close":
            connection.close_code = 1011
            await ws.close(1011, "stand-in fault: closing at once")
            self.notify()
            return
        await connection.run()


def _json_response(
    connection: ServerConnection, status: http.HTTPStatus, message: str, code: str | None
) -> Response:
    """An HTTP error answer to the handshake, with the JSON error body the API uses."""
    error = {"message": message, "type": "invalid_request_error", "code": code, "param": None}
    response = connection.respond(status, orjson.dumps({"error": error}).decode())
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


async def serve_forever(host: str, port: int, **options: Any) -> None:
    """Run a stand-in until SIGINT or SIGTERM (what `make run` starts in development).

    `options` are RealtimeStandIn's keyword arguments (speed, echo, seed, the delays...).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with RealtimeStandIn(host=host, port=port, **options) as standin:
        what = "echoing caller audio" if standin.echo else "scripted replies"
        print(f"realtime stand-in listening on {standin.url} ({what}, not OpenAI)", flush=True)
        print(f"GPT-Live stand-in listening on {standin.live_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local stand-in for the OpenAI Realtime API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--speed",
        type=float,
        default=4.0,
        help="how many times faster than real time replies stream",
    )
    parser.add_argument(
        "--echo", action="store_true", help="send every appended frame straight back as audio"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    delays = (
        (
            "--transcription-delay",
            "transcription_delay_s",
            DEFAULT_TRANSCRIPTION_DELAY_S,
            "commit to transcript",
        ),
        (
            "--response-delay",
            "response_delay_s",
            DEFAULT_RESPONSE_DELAY_S,
            "speech_stopped to response.created",
        ),
        (
            "--first-audio-delay",
            "first_audio_delay_s",
            DEFAULT_FIRST_AUDIO_DELAY_S,
            "response.created to the first audio",
        ),
    )
    for flag, dest, default, what in delays:
        parser.add_argument(
            flag,
            dest=dest,
            type=float,
            nargs=2,
            metavar=("LOW", "HIGH"),
            default=default,
            help=f"seconds from {what}, drawn uniformly (default: %(default)s)",
        )
    parser.add_argument(
        "--transcription-failure-rate",
        type=float,
        default=DEFAULT_TRANSCRIPTION_FAILURE_RATE,
        help="share of caller turns whose transcription fails (default: %(default)s)",
    )
    parser.add_argument(
        "--even-chunks",
        action="store_true",
        help="audio deltas of exactly 100 ms each instead of a few samples more or less",
    )
    parser.add_argument(
        "--no-tool-calls",
        action="store_true",
        help="never call a tool (default: each offered function tool once, ending ones last)",
    )
    parser.add_argument(
        "--tool-reply",
        default=DEFAULT_TOOL_REPLY,
        help="what the model says once a tool's output is back (default: %(default)r)",
    )
    parser.add_argument(
        "--reprompt-line",
        dest="reprompt_lines",
        action="append",
        metavar="TEXT",
        help="what the model says to a caller silent past idle_timeout_ms (repeat for more; "
        f"default: {DEFAULT_REPROMPT_LINES[0]!r})",
    )
    _add_live_arguments(parser)
    args = parser.parse_args(argv)
    options = {
        "speed": args.speed,
        "echo": args.echo,
        "seed": args.seed,
        "transcription_failure_rate": args.transcription_failure_rate,
        "uneven_chunks": not args.even_chunks,
        "reprompt_lines": tuple(args.reprompt_lines or DEFAULT_REPROMPT_LINES),
        "tool_calls": () if args.no_tool_calls else None,
        "tool_reply": args.tool_reply,
        **{dest: tuple(getattr(args, dest)) for _, dest, _, _ in delays},
        "live": LiveOptions(
            chunk_ms=args.live_chunk_ms,
            reply_delay_s=tuple(args.live_reply_delay),
            session_limit_s=args.live_session_limit,
            usage_interval_s=args.live_usage_interval,
        ),
    }
    asyncio.run(serve_forever(args.host, args.port, **options))
    return 0


def _add_live_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = LiveOptions()
    parser.add_argument(
        "--live-chunk-ms",
        type=int,
        default=defaults.chunk_ms,
        help="GPT-Live: milliseconds of the output track per delta (default: %(default)s)",
    )
    parser.add_argument(
        "--live-reply-delay",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=defaults.reply_delay_s,
        help="GPT-Live: seconds from the end of a caller turn to the reply (default: %(default)s)",
    )
    parser.add_argument(
        "--live-session-limit",
        type=float,
        default=defaults.session_limit_s,
        help="GPT-Live: seconds until session.closed 'expired' (default: %(default)s)",
    )
    parser.add_argument(
        "--live-usage-interval",
        type=float,
        default=defaults.usage_interval_s,
        help="GPT-Live: seconds between session.usage.updated (default: %(default)s)",
    )


if __name__ == "__main__":
    raise SystemExit(main())
