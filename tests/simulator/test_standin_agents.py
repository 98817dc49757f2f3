"""What an agent can ask of the stand-in (issue 21): a reply requested with instructions (the
agent speaks first, or says goodbye), the idle timeout that re-prompts a silent caller, and the
session fields an agent sends (noise reduction, transcription language, semantic_vad eagerness).

Every event the stand-in sends here is checked against the `openai` SDK's server event types.
Loopback only; every test is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai.types.beta.realtime import response_create_event_param as beta_response
from openai.types.beta.realtime import session_update_event_param as beta_session
from openai.types.realtime import AudioTranscriptionParam, RealtimeResponseCreateParamsParam
from openai.types.realtime.realtime_audio_config_input_param import NoiseReduction
from openai.types.realtime.realtime_audio_input_turn_detection_param import SemanticVad, ServerVad
from sim_support import RealtimeClient, assert_all_sdk_valid, caller_turn, of_type
from websockets.asyncio.client import connect

from audio.g711 import ulaw_encode
from simulator.openai import protocol as rt
from simulator.openai.standin import DEFAULT_REPLIES, RealtimeStandIn
from simulator.speech import silence

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

TRANSCRIPTION = "conversation.item.input_audio_transcription"
GREETING = "Welcome to Acme. How can I help you today?"
GREETING_S = 3.15  # 9 words at 0.35 s
TIMEOUT = "input_audio_buffer.timeout_triggered"
# The bridge asks for its greeting this way (realtime/bridge.py `_say`); any instructions
# quoting a passage do the same.
GREET = 'Greet the caller now. Say exactly this, nothing more: "{}"'


def greet(text: str) -> dict[str, Any]:
    return {"instructions": GREET.format(text)}


def said(client: RealtimeClient, response_id: str) -> str:
    """What a response said, from its transcript deltas."""
    deltas = of_type(client, "response.output_audio_transcript.delta") + of_type(
        client, "response.audio_transcript.delta"
    )
    return "".join(d["delta"] for d in deltas if d["response_id"] == response_id)


def audio_bytes(client: RealtimeClient, response_id: str) -> int:
    deltas = of_type(client, "response.output_audio.delta") + of_type(
        client, "response.audio.delta"
    )
    return sum(len(base64.b64decode(d["delta"])) for d in deltas if d["response_id"] == response_id)


async def configure(client: RealtimeClient, audio_input: dict[str, Any]) -> dict[str, Any]:
    """A mu-law GA session with these input settings; the session.updated (or error) event."""
    pcmu = {"type": "audio/pcmu"}
    await client.send(
        "session.update",
        session={
            "type": "realtime",
            "audio": {"input": {"format": pcmu, **audio_input}, "output": {"format": pcmu}},
        },
    )
    while True:
        event = await client.next_event()
        if event["type"] in ("session.updated", "error"):
            return event


async def open_client(server: RealtimeStandIn, *, beta: bool = False) -> RealtimeClient:
    headers = {"Authorization": "Bearer k"}
    if beta:
        headers["OpenAI-Beta"] = "realtime=v1"
    ws = await connect(server.url + "?model=gpt-realtime", additional_headers=headers)
    return RealtimeClient(ws)


@pytest.fixture
async def quick() -> AsyncIterator[RealtimeStandIn]:
    """Short fixed delays and replies streamed with no pauses (speed 0), so where a reply's
    playback ends on the input clock is known: its whole length after response.done."""
    async with RealtimeStandIn(
        speed=0,
        response_delay_s=0.05,
        first_audio_delay_s=0.05,
        transcription_delay_s=0.1,
        transcription_failure_rate=0.0,
        reprompt_lines=("Are you still there?", "Hello? I cannot hear you."),
    ) as server:
        yield server


# --- the convention ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instructions", "passage"),
    [
        ('Say exactly this, nothing more: "Hello there."', "Hello there."),
        ("Say \u201cBonjour \u00e0 tous.\u201d warmly.", "Bonjour \u00e0 tous."),
        ('An empty "" passage does not count: "Hi."', "Hi."),
        ('Two: "First one." then "Second one."', "First one."),
        ("Greet the caller warmly.", None),
        ("Single 'quotes' are not a passage.", None),
    ],
)
def test_the_quoted_passage_is_what_the_reply_says(instructions: str, passage: str | None):
    assert rt.quoted_passage(instructions) == passage


def test_a_spoken_reply_lasts_in_proportion_to_its_words():
    assert rt.spoken_reply("Hi.").seconds == rt.MIN_SPOKEN_S
    assert rt.spoken_reply(GREETING) == rt.Reply(GREETING, GREETING_S)
    assert rt.spoken_reply("Are you still there?").seconds == pytest.approx(4 * 0.35)


def test_the_field_lists_are_the_sdks():
    def keys(typed_dict: Any) -> set[str]:
        return set(typed_dict.__required_keys__ | typed_dict.__optional_keys__)

    assert rt.RESPONSE_FIELDS["ga"] == keys(RealtimeResponseCreateParamsParam)
    assert rt.RESPONSE_FIELDS["beta"] == keys(beta_response.Response)
    assert rt.TURN_DETECTION_FIELDS["ga"]["server_vad"] == keys(ServerVad)
    assert rt.TURN_DETECTION_FIELDS["ga"]["semantic_vad"] == keys(SemanticVad)
    assert rt.TURN_DETECTION_FIELDS["beta"]["server_vad"] == keys(beta_session.SessionTurnDetection)
    assert rt.NOISE_REDUCTION_FIELDS["ga"] == keys(NoiseReduction)
    assert rt.NOISE_REDUCTION_FIELDS["beta"] == keys(beta_session.SessionInputAudioNoiseReduction)
    assert rt.TRANSCRIPTION_FIELDS["ga"] == keys(AudioTranscriptionParam)
    assert rt.TRANSCRIPTION_FIELDS["beta"] == keys(beta_session.SessionInputAudioTranscription)


# --- speak first --------------------------------------------------------------------------------


async def test_a_quoted_greeting_is_said_first_before_any_caller_audio(
    realtime_connect, standin: RealtimeStandIn
):
    async with asyncio.timeout(15):
        client = await realtime_connect()
        await client.use_pcmu()
        asked = time.monotonic()
        await client.send("response.create", response=greet(GREETING))
        created = await client.until("response.created")
        created_at = time.monotonic()
        done = await client.until("response.done")
        connection = standin.connections[0]
        # No caller audio at all: the greeting needed none.
        assert connection.appends == 0 and connection.input_ms == 0

        # The caller then speaks: the script was not moved on by the greeting.
        await client.append(caller_turn())
        answer = await client.until("response.done")

    assert_all_sdk_valid(connection)
    response_id = done["response"]["id"]
    assert created["response"]["id"] == response_id
    # The model's delays apply (conftest: 50-150 ms to response.created).
    assert created_at - asked >= 0.045
    assert said(client, response_id) == GREETING
    transcript_done = of_type(client, "response.output_audio_transcript.done")[0]
    assert transcript_done["transcript"] == GREETING
    # Speech of 0.35 s a word, mu-law at 8 kHz, in uneven chunks as ever.
    assert audio_bytes(client, response_id) == round(GREETING_S * 8000)
    sizes = [
        len(base64.b64decode(d["delta"]))
        for d in of_type(client, "response.output_audio.delta")
        if d["response_id"] == response_id
    ]
    assert all(size % 8 for size in sizes[:-1])
    # Into the default conversation: an assistant item, announced and done.
    response = done["response"]
    assert response["status"] == "completed"
    assert response["conversation_id"] == rt.CONVERSATION_ID
    assert response["output"][0]["role"] == "assistant"
    assert response["output"][0]["content"][0]["transcript"] == GREETING
    greeting_item = response["output"][0]["id"]
    added = [e for e in of_type(client, "conversation.item.added") if e["item"]["role"] == "user"]
    assert added[0]["previous_item_id"] == greeting_item
    assert said(client, answer["response"]["id"]) == DEFAULT_REPLIES[0].text


async def test_instructions_without_a_quoted_passage_get_the_next_scripted_reply(
    realtime_connect, standin: RealtimeStandIn
):
    async with asyncio.timeout(20):
        client = await realtime_connect()
        await client.use_pcmu(transcription=False)
        texts = []
        for request in (
            {"instructions": "Greet the caller warmly."},
            greet("Thanks for holding."),
            {"instructions": "Carry on."},
        ):
            await client.send("response.create", response=request)
            done = await client.until("response.done")
            texts.append(said(client, done["response"]["id"]))
    assert_all_sdk_valid(standin.connections[0])
    assert texts == [DEFAULT_REPLIES[0].text, "Thanks for holding.", DEFAULT_REPLIES[1].text]


async def test_a_cut_greeting_is_cut_like_any_reply(realtime_connect, standin: RealtimeStandIn):
    standin.speed = 1.0
    async with asyncio.timeout(15):
        client = await realtime_connect()
        await client.use_pcmu()
        await client.send("response.create", response=greet(GREETING))
        await client.until("response.output_audio_transcript.delta")
        await client.append(caller_turn(1.0, lead_s=0.0, tail_s=0.0))
        done = await client.until("response.done")
    assert_all_sdk_valid(standin.connections[0])
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    heard = done["response"]["output"][0]["content"][0]["transcript"]
    assert GREETING.startswith(heard) and heard != GREETING
    assert not of_type(client, "response.output_audio_transcript.done")


async def test_response_create_is_checked_like_the_service_checks_it(
    realtime_connect, standin: RealtimeStandIn
):
    bad: list[tuple[object, str, str]] = [
        ({"instructions": "Hi.", "voice": "marin"}, "unknown_parameter", "response.voice"),
        ("Say hello", "invalid_type", "response"),
        ({"instructions": 42}, "invalid_type", "response.instructions"),
        ({"conversation": "conv_123"}, "invalid_value", "response.conversation"),
        ({"metadata": {"attempt": 2}}, "invalid_type", "response.metadata.attempt"),
        # Out of band: not supported by the stand-in, refused without harm.
        ({"conversation": "none", **greet("Hi.")}, "unsupported_value", "response.conversation"),
    ]
    async with asyncio.timeout(15):
        client = await realtime_connect()
        await client.use_pcmu(transcription=False)
        errors = []
        for n, (request, _, _) in enumerate(bad):
            await client.send("response.create", event_id=f"evt_{n}", response=request)
            errors.append((await client.until("error"))["error"])
        # Every field the SDK allows is taken; metadata comes back with the response.
        await client.send(
            "response.create",
            response={
                **greet("Hello there."),
                "conversation": "auto",
                "metadata": {"purpose": "greeting"},
                "output_modalities": ["audio"],
                "audio": {"output": {"voice": "marin"}},
                "max_output_tokens": 200,
            },
        )
        done = await client.until("response.done")

    assert_all_sdk_valid(standin.connections[0])
    assert [(e["code"], e["param"]) for e in errors] == [(code, param) for _, code, param in bad]
    assert [e["event_id"] for e in errors] == [f"evt_{n}" for n in range(len(bad))]
    assert errors[0]["message"] == "Unknown parameter: 'response.voice'."
    assert errors[0]["type"] == "invalid_request_error"
    assert len(of_type(client, "response.created")) == 1
    assert of_type(client, "response.created")[0]["response"]["metadata"] == {"purpose": "greeting"}
    assert done["response"]["metadata"] == {"purpose": "greeting"}
    assert said(client, done["response"]["id"]) == "Hello there."


async def test_a_beta_session_speaks_a_quoted_greeting_too(realtime_connect, standin):
    async with asyncio.timeout(15):
        client = await realtime_connect(beta=True)
        await client.send(
            "session.update",
            session={"input_audio_format": "g711_ulaw", "output_audio_format": "g711_ulaw"},
        )
        await client.until("session.updated")
        # GA's output_modalities is not a beta field.
        await client.send("response.create", response={"output_modalities": ["audio"]})
        error = (await client.until("error"))["error"]
        await client.send(
            "response.create", response={**greet(GREETING), "modalities": ["audio", "text"]}
        )
        done = await client.until("response.done")
    assert_all_sdk_valid(standin.connections[0])
    assert (error["code"], error["param"]) == ("unknown_parameter", "response.output_modalities")
    assert of_type(client, "response.audio_transcript.done")[0]["transcript"] == GREETING
    assert audio_bytes(client, done["response"]["id"]) == round(GREETING_S * 8000)


# --- the idle timeout ---------------------------------------------------------------------------


IDLE = {"type": "server_vad", "idle_timeout_ms": 800}
TRANSCRIBE = {"transcription": {"model": "gpt-4o-mini-transcribe"}}


async def append_silence(client: RealtimeClient, seconds: float) -> None:
    await client.append(ulaw_encode(silence(seconds)))


async def test_a_silent_caller_is_re_prompted_after_the_idle_timeout(quick: RealtimeStandIn):
    async with asyncio.timeout(20):
        client = await open_client(quick)
        assert (await configure(client, {"turn_detection": IDLE, **TRANSCRIBE}))["type"] == (
            "session.updated"
        )
        await client.send("response.create", response=greet("Hello there."))  # 0.8 s
        await client.until("response.done")
        connection = quick.connections[0]
        # Streamed at once (speed 0), the greeting plays for its 0.8 s after response.done:
        # then 800 ms of silence. 1.2 s of audio is not enough...
        await append_silence(client, 1.2)
        await quick.wait_until(lambda: connection.input_ms >= 1200)
        await asyncio.sleep(0.1)
        assert TIMEOUT not in connection.sent_types()
        # ...2.0 s is.
        await append_silence(client, 0.8)
        first = await client.until(TIMEOUT)
        reprompt = await client.until("response.done")
        if not of_type(client, f"{TRANSCRIPTION}.completed"):
            await client.until(f"{TRANSCRIPTION}.completed")

        # No new timeout before the re-prompt's own playback (1.4 s) and 800 ms more.
        played_from = connection.input_ms
        await append_silence(client, 1.8)
        await quick.wait_until(lambda: connection.input_ms >= played_from + 1800)
        await asyncio.sleep(0.1)
        assert len(of_type(client, TIMEOUT)) == 1 and connection.sent_types().count(TIMEOUT) == 1
        await append_silence(client, 1.0)
        second = await client.until(TIMEOUT)
        second_reprompt = await client.until("response.done")

    assert_all_sdk_valid(connection)
    # The silent span: from where the greeting stopped playing, for the timeout.
    assert 760 <= first["audio_start_ms"] <= 800
    assert 800 <= first["audio_end_ms"] - first["audio_start_ms"] < 800 + 20
    # The silence is committed as an input_audio item, its transcription empty.
    committed = of_type(client, "input_audio_buffer.committed")
    assert [c["item_id"] for c in committed] == [first["item_id"], second["item_id"]]
    item = next(
        e["item"]
        for e in of_type(client, "conversation.item.added")
        if e["item"]["id"] == first["item_id"]
    )
    assert (item["role"], item["content"][0]["type"]) == ("user", "input_audio")
    completed = of_type(client, f"{TRANSCRIPTION}.completed")[0]
    assert (completed["item_id"], completed["transcript"]) == (first["item_id"], "")
    assert not [d for d in of_type(client, f"{TRANSCRIPTION}.delta") if d["item_id"] == item["id"]]
    # ...and the model re-prompts, once per timeout, in turn.
    types = connection.sent_types()
    assert types.index(TIMEOUT) < types.index("input_audio_buffer.committed")
    assert said(client, reprompt["response"]["id"]) == "Are you still there?"
    assert said(client, second_reprompt["response"]["id"]) == "Hello? I cannot hear you."
    # The second timeout counts from where the first re-prompt stopped playing.
    assert second["audio_start_ms"] >= first["audio_end_ms"] + 1400 - 40
    assert 800 <= second["audio_end_ms"] - second["audio_start_ms"] < 800 + 20
    assert connection.transcriptions == 0  # no scripted caller line was used up


async def test_the_timeout_counts_from_the_end_of_playback_not_of_streaming(
    quick: RealtimeStandIn,
):
    quick.speed = 4.0  # the greeting streams in a quarter of its length: 3/4 is still to play
    async with asyncio.timeout(20):
        client = await open_client(quick)
        await configure(client, {"turn_detection": IDLE})
        await client.send("response.create", response=greet(GREETING))
        await client.until("response.done")
        await append_silence(client, 3.5)
        triggered = await client.until(TIMEOUT)
    assert_all_sdk_valid(quick.connections[0])
    still_to_play_ms = GREETING_S * 1000 * 3 / 4
    assert still_to_play_ms - 150 <= triggered["audio_start_ms"] <= still_to_play_ms + 20


async def test_speech_before_the_timeout_prevents_it(quick: RealtimeStandIn):
    async with asyncio.timeout(20):
        client = await open_client(quick)
        await configure(client, {"turn_detection": IDLE, **TRANSCRIBE})
        await client.send("response.create", response=greet("Hello there."))
        await client.until("response.done")
        # Silence alone would time out at 1.6 s; the caller starts speaking at 0.3 s and the
        # audio runs to 2.8 s.
        await client.append(caller_turn(1.0, lead_s=0.3, tail_s=1.5))
        answer = await client.until("response.done")
        connection = quick.connections[0]
        await quick.wait_until(lambda: connection.input_ms >= 2800)
        await asyncio.sleep(0.1)
    assert_all_sdk_valid(connection)
    assert TIMEOUT not in connection.sent_types()
    assert said(client, answer["response"]["id"]) == DEFAULT_REPLIES[0].text


@pytest.mark.parametrize(
    "detection",
    [
        {"type": "server_vad", "idle_timeout_ms": None},
        {"type": "semantic_vad", "eagerness": "high"},  # idle timeout is server_vad's only
        None,
    ],
)
async def test_no_idle_timeout_unless_server_vad_sets_one(
    quick: RealtimeStandIn, detection: dict[str, Any] | None
):
    async with asyncio.timeout(15):
        client = await open_client(quick)
        await configure(client, {"turn_detection": detection})
        await client.send("response.create", response=greet("Hello there."))
        await client.until("response.done")
        await append_silence(client, 4.0)
        connection = quick.connections[0]
        await quick.wait_until(lambda: connection.input_ms >= 4000)
        await asyncio.sleep(0.1)
    assert TIMEOUT not in connection.sent_types()
    assert connection.sent_types().count("response.created") == 1


# --- the session fields an agent sends ----------------------------------------------------------


async def test_noise_reduction_language_and_eagerness_are_kept_in_the_session(
    realtime_connect, standin: RealtimeStandIn
):
    async with asyncio.timeout(10):
        client = await realtime_connect()
        updated = await configure(
            client,
            {
                "noise_reduction": {"type": "near_field"},
                "transcription": {"model": "gpt-4o-mini-transcribe", "language": "es"},
                "turn_detection": {"type": "semantic_vad", "eagerness": "high"},
            },
        )
        audio_input = updated["session"]["audio"]["input"]
        assert audio_input["noise_reduction"] == {"type": "near_field"}
        assert audio_input["transcription"]["language"] == "es"
        # A new semantic_vad reports the defaults of the fields it was not given.
        assert audio_input["turn_detection"] == {
            "type": "semantic_vad",
            "eagerness": "high",
            "create_response": True,
            "interrupt_response": True,
        }
        # null turns noise reduction off; back to server_vad with an idle timeout.
        updated = await configure(
            client,
            {
                "noise_reduction": None,
                "turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000},
            },
        )
        audio_input = updated["session"]["audio"]["input"]
        assert audio_input["noise_reduction"] is None
        assert audio_input["turn_detection"]["idle_timeout_ms"] == 5000
        assert audio_input["turn_detection"]["silence_duration_ms"] == 500
        assert audio_input["transcription"]["language"] == "es"  # kept
    assert_all_sdk_valid(standin.connections[0])


@pytest.mark.parametrize(
    ("audio_input", "code", "param"),
    [
        ({"noise_reduction": {"type": "loud"}}, "invalid_value", "noise_reduction.type"),
        ({"noise_reduction": "near_field"}, "invalid_type", "noise_reduction"),
        (
            {"turn_detection": {"type": "semantic_vad", "eagerness": "fast"}},
            "invalid_value",
            "turn_detection.eagerness",
        ),
        (
            {"turn_detection": {"type": "semantic_vad", "idle_timeout_ms": 5000}},
            "unknown_parameter",
            "turn_detection.idle_timeout_ms",
        ),
        (
            {"turn_detection": {"type": "server_vad", "eagerness": "high"}},
            "unknown_parameter",
            "turn_detection.eagerness",
        ),
        (
            {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 0}},
            "integer_below_min_value",
            "turn_detection.idle_timeout_ms",
        ),
        (
            {"turn_detection": {"type": "server_vad", "idle_timeout_ms": "5000"}},
            "invalid_type",
            "turn_detection.idle_timeout_ms",
        ),
        (
            {"turn_detection": {"type": "server_vad", "threshold": 1.5}},
            "decimal_above_max_value",
            "turn_detection.threshold",
        ),
        ({"turn_detection": {"type": "push_to_talk"}}, "invalid_value", "turn_detection.type"),
        ({"transcription": {"language": 12}}, "invalid_type", "transcription.language"),
        ({"transcription": {"lang": "es"}}, "unknown_parameter", "transcription.lang"),
    ],
)
async def test_bad_input_settings_are_refused_naming_the_field(
    realtime_connect, standin: RealtimeStandIn, audio_input: dict, code: str, param: str
):
    async with asyncio.timeout(10):
        client = await realtime_connect()
        await client.until("session.created")
        error = (await configure(client, audio_input))["error"]
        # The session is unchanged and goes on.
        assert (await configure(client, {}))["type"] == "session.updated"
    assert (error["code"], error["param"]) == (code, f"session.audio.input.{param}")
    assert param in error["message"] or "Invalid value" in error["message"]
    session = standin.connections[0].session["audio"]["input"]
    assert session["noise_reduction"] is None
    assert session["turn_detection"]["type"] == "server_vad"
    assert_all_sdk_valid(standin.connections[0])


@pytest.mark.parametrize(("eagerness", "silence_ms"), [("high", 300), ("auto", 500), ("low", 1000)])
async def test_eagerness_sets_the_silence_that_ends_a_semantic_vad_turn(
    realtime_connect, standin: RealtimeStandIn, eagerness: str, silence_ms: int
):
    async with asyncio.timeout(15):
        client = await realtime_connect()
        detection = {"type": "semantic_vad", "eagerness": eagerness}
        await configure(client, {"turn_detection": detection})
        await client.append(caller_turn(1.0, lead_s=0.5, tail_s=1.5))  # speech ends at 1.5 s
        stopped = await client.until("input_audio_buffer.speech_stopped")
        await client.until("response.done")
    assert abs(stopped["audio_end_ms"] - (1500 + silence_ms)) <= 30
    assert_all_sdk_valid(standin.connections[0])


async def test_a_beta_session_takes_noise_reduction_and_eagerness_but_no_idle_timeout(
    realtime_connect, standin: RealtimeStandIn
):
    async with asyncio.timeout(15):
        client = await realtime_connect(beta=True)
        await client.until("session.created")
        await client.send(
            "session.update",
            session={
                "input_audio_format": "g711_ulaw",
                "output_audio_format": "g711_ulaw",
                "input_audio_noise_reduction": {"type": "far_field"},
                "input_audio_transcription": {"model": "whisper-1", "language": "fr"},
                "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
            },
        )
        session = (await client.until("session.updated"))["session"]
        await client.send(
            "session.update",
            session={"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}},
        )
        error = (await client.until("error"))["error"]
        await client.append(caller_turn(1.0, lead_s=0.5, tail_s=1.5))
        stopped = await client.until("input_audio_buffer.speech_stopped")
        await client.until("response.done")
    assert session["input_audio_noise_reduction"] == {"type": "far_field"}
    assert session["input_audio_transcription"]["language"] == "fr"
    assert session["turn_detection"]["eagerness"] == "low"
    assert (error["code"], error["param"]) == (
        "unknown_parameter",
        "session.turn_detection.idle_timeout_ms",
    )
    assert abs(stopped["audio_end_ms"] - (1500 + 1000)) <= 30
    assert_all_sdk_valid(standin.connections[0])
