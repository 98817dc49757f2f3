"""The model edge as the bridge sees it: typed events in, a few commands out.

`CallBridge` depends only on this module, never on Realtime event names, so a second
implementation (OpenAI's GPT-Live API, say) can slot in beside `realtime.client`.

Audio crosses this interface in both directions as Twilio's wire format, base64 mu-law 8 kHz.
In the default `audio/pcmu` mode the model speaks it too, so the strings pass untouched and no
audio is decoded on the hot path; in `audio/pcm` mode the session converts (PCM16 24 kHz) with
the audio toolkit's streaming converters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Protocol

AudioFormat = Literal["audio/pcmu", "audio/pcm"]
Role = Literal["user", "assistant"]


TurnDetection = Literal["server_vad", "semantic_vad"]
Eagerness = Literal["low", "medium", "high", "auto"]
# Which OpenAI protocol answers the agent's calls: the Realtime API (realtime.client) or
# GPT-Live (realtime.live). GPT-Live has no turn detection, noise reduction or transcription
# model settings: it listens while it speaks and transcribes both sides itself.
Backend = Literal["realtime", "gpt-live"]
NoiseReduction = Literal["", "near_field", "far_field"]


@dataclass(frozen=True)
class AgentConfig:
    """What the model is told on one call: the answering agent's configuration as it was when
    the call came in (agents.services.agent_config builds the dict this is read from, and the
    call keeps it as its snapshot, so editing the agent never changes a call under way)."""

    model: str = "gpt-realtime"
    backend: Backend = "realtime"
    instructions: str = "You are a helpful, concise voice assistant on a phone call."
    greeting: str = ""  # said first, as soon as the session is ready; empty: wait for the caller
    voice: str = "alloy"
    language: str = ""  # ISO-639-1 hint for the caller's transcription; empty: detect
    turn_detection: TurnDetection = "server_vad"
    # server_vad: sent explicitly, so the bridge knows how much silence closes a turn (and so
    # where the caller's speech really ended, for latency).
    vad_threshold: float = 0.5
    vad_prefix_padding_ms: int = 300
    vad_silence_duration_ms: int = 500
    vad_eagerness: Eagerness = "auto"  # semantic_vad only
    noise_reduction: NoiseReduction = ""  # empty: off
    idle_timeout_ms: int | None = None  # server_vad: re-prompt a caller silent this long
    transcription_model: str = "gpt-4o-mini-transcribe"
    max_call_minutes: int | None = None  # ended politely at this length; None: no limit
    # The agent's tools as configured ({"type": "end_call"}, {"type": "webhook", ...}): the
    # bridge runs them (realtime.tools), the session is offered their definitions.
    tools: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AgentConfig:
        """From a snapshot; keys this version does not know are ignored, missing ones default."""
        known = {f.name for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in known}
        if "tools" in kept:
            kept["tools"] = tuple(kept["tools"] or ())
        return cls(**kept)

    def to_dict(self) -> dict[str, Any]:
        """JSON-shaped (lists, not tuples): a snapshot compares equal after a database trip."""
        values = asdict(self)
        values["tools"] = [dict(tool) for tool in self.tools]
        return values


@dataclass(frozen=True)
class RealtimeSettings:
    """Everything needed to open and configure one model session: the deployment's connection
    settings (settings.OPENAI_*, REALTIME_*) and the answering agent's configuration."""

    url: str
    api_key: str = field(repr=False)  # never in a repr, so never in a log line
    agent: AgentConfig = field(default_factory=AgentConfig)
    protocol: Literal["ga", "beta"] = "ga"
    audio_format: AudioFormat = "audio/pcmu"
    max_reconnects: int = 5
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    connect_timeout_s: float = 10.0
    # Caller audio kept for a reconnect until its turn is transcribed (0 turns it off).
    replay_audio_s: float = 8.0
    # What the session offers the model: function definitions of the agent's tools (and MCP
    # servers the service calls itself), in the service's shape (realtime.tools builds them).
    session_tools: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ContextItem:
    """One conversation line replayed into a fresh session after a reconnect."""

    role: Role
    text: str


# --- events the model session yields ------------------------------------------------------------


@dataclass(frozen=True)
class SessionReady:
    """The session is configured (first connect or after a reconnect)."""

    reconnect_attempt: int = 0
    # Caller audio sent to the session before live audio resumed: what the caller said while
    # the first connect was under way, or after a reconnect the turn a drop interrupted. The
    # session's audio clock starts that much before the end of the caller audio sent so far.
    replayed_audio_ms: float = 0.0
    # A session replaced on purpose before it expired (GPT-Live's renewal): the conversation
    # goes on in the new one, seeded with what was said; not a drop, not a reconnect.
    renewal: bool = False


@dataclass(frozen=True)
class AudioDelta:
    """A chunk of agent audio, base64 mu-law 8 kHz (converted by the session if needed).

    A session that has already decoded the chunk passes the bytes and whether they carry
    sound (GPT-Live's, which tracks the agent's sound itself), so the bridge does not do it
    again on every delta; None: the bridge works them out.
    """

    item_id: str
    response_id: str
    audio_b64: str
    audio: bytes | None = None
    audible: bool | None = None


@dataclass(frozen=True)
class AgentTranscriptDone:
    """The text of an assistant item. `complete` is False for a reply cut short (cancelled by
    the caller's speech or by us): its text is what was generated before the cut."""

    item_id: str
    response_id: str
    text: str
    complete: bool = True


@dataclass(frozen=True)
class CallerTranscriptDone:
    item_id: str
    text: str


@dataclass(frozen=True)
class CallerTranscriptFailed:
    """The service could not transcribe a caller turn (the turn itself was heard)."""

    item_id: str
    message: str


@dataclass(frozen=True)
class SpeechStarted:
    """Server VAD heard the caller start; audio_start_ms is on the model's input-audio clock."""

    item_id: str
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    """The caller's turn ended. `audio_end_ms` is the service's: it includes the silence that
    closed the turn. `speech_end_ms` is where the caller's voice stopped (that silence taken
    off, when the session knows it), on the same input-audio clock."""

    item_id: str
    audio_end_ms: int
    speech_end_ms: int


@dataclass(frozen=True)
class CallerIdle:
    """The caller stayed silent past the agent's idle timeout: the service commits the silence
    as a turn of its own (`item_id`, never a real caller line) and re-prompts them."""

    item_id: str


@dataclass(frozen=True)
class ResponseStarted:
    response_id: str


@dataclass(frozen=True)
class Usage:
    """Tokens of one response. Cached tokens are a subset of the input tokens of their kind:
    cached_audio_tokens <= input_audio_tokens, cached_text_tokens <= input_text_tokens."""

    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    input_text_tokens: int = 0
    output_text_tokens: int = 0
    cached_audio_tokens: int = 0
    cached_text_tokens: int = 0

    @property
    def cached_input_tokens(self) -> int:
        return self.cached_audio_tokens + self.cached_text_tokens


@dataclass(frozen=True)
class ToolCallRequested:
    """The model calls a tool. Answer with `ModelSession.tool_result(call_id, output)`; a
    response may hold several calls: answer every one before asking for the next reply."""

    call_id: str
    name: str
    arguments: str  # JSON text as the model wrote it (it may not parse)
    response_id: str


@dataclass(frozen=True)
class ServiceToolCall:
    """A tool the service ran itself (an MCP server's), reported once it finished."""

    item_id: str
    server_label: str
    name: str
    arguments: str
    output: str | None
    error: str | None


@dataclass(frozen=True)
class ResponseDone:
    """A response ended (`status`: completed, cancelled, incomplete, failed). `transcripts`
    are its assistant items' texts as the response reports them: the only place a reply cut
    short has its text."""

    response_id: str
    status: str
    usage: Usage = field(default_factory=Usage)
    transcripts: tuple[AgentTranscriptDone, ...] = ()
    tool_calls: tuple[ToolCallRequested, ...] = ()  # every call this response made


@dataclass(frozen=True)
class ModelError:
    """An `error` event the session survives (bad request, rate limit...)."""

    code: str
    message: str


@dataclass(frozen=True)
class Disconnected:
    """The socket dropped; the session is reconnecting (audio sent meanwhile is dropped)."""

    reason: str


@dataclass(frozen=True)
class SessionFailed:
    """Reconnects are exhausted or the service refused us: the session is over for good."""

    reason: str


# --- events of a continuous-track session (GPT-Live) ---------------------------------------------


@dataclass(frozen=True)
class TimedLine:
    """A finished line of a session whose transcripts come as timed fragments (GPT-Live):
    `start_ms`/`end_ms` are on the session's timeline, which runs with the caller audio sent
    to it (SpeechStarted's clock). `interrupted`: the caller spoke over this agent line (the
    model stops by itself when talked over)."""

    role: Role
    text: str
    start_ms: float
    end_ms: float
    interrupted: bool = False


ModelEvent = (
    SessionReady
    | AudioDelta
    | AgentTranscriptDone
    | CallerTranscriptDone
    | CallerTranscriptFailed
    | SpeechStarted
    | SpeechStopped
    | CallerIdle
    | ResponseStarted
    | ResponseDone
    | ToolCallRequested
    | ServiceToolCall
    | ModelError
    | Disconnected
    | SessionFailed
    | TimedLine
)

ContextProvider = Callable[[], list[ContextItem]]


class ModelSession(Protocol):
    """One caller's conversation with the model, surviving socket drops on its own."""

    # True for a model that streams one continuous agent track (GPT-Live): no items, no
    # truncate or cancel (the model stops by itself when talked over), lines as TimedLine.
    continuous_track: bool
    # Model time billed so far on the call, every session included (GPT-Live bills seconds of
    # session; 0 for a model billed by tokens alone).
    billed_seconds: float

    async def connect(self) -> None:
        """Open and configure the session; raise ModelUnavailable if every attempt fails."""

    async def send_audio(self, payload_b64: str) -> None:
        """Caller audio as Twilio sent it (base64 mu-law 8 kHz); converted if the format needs."""

    async def send_text(self, text: str) -> None:
        """A user text turn (DTMF digits, for instance) followed by a response request."""

    async def commit_audio(self) -> None:
        """End the caller's turn now (the caller hung up mid-sentence): the audio sent so far
        becomes a turn and is transcribed; no reply is asked for."""

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Tell the model the caller heard only audio_end_ms of that assistant item."""

    async def cancel_response(self) -> None:
        """Stop the response in progress (call only while one is)."""

    async def request_response(self) -> None:
        """Ask for a reply to the conversation as it stands (after a replay)."""

    async def instruct(self, instructions: str) -> None:
        """Ask for one reply following `instructions` now (speak first, say goodbye)."""

    async def tool_result(self, call_id: str, output: str) -> None:
        """The output of a tool call, into the conversation (no reply is asked for)."""

    def events(self) -> AsyncIterator[ModelEvent]:
        """Events until close() or SessionFailed; reconnects happen inside."""

    def finish_lines(self) -> list[ModelEvent]:
        """At the call's end: the lines still being assembled, finished as they stand (a
        continuous-track session holds lines until the other side's timing is known)."""

    async def close(self) -> None: ...


class ModelUnavailable(Exception):
    """The model service could not be reached or configured at call start."""
