"""TwiML answers, built with the twilio package's VoiceResponse."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from twilio.twiml.voice_response import Connect, Dial, VoiceResponse

from telephony.security import (
    public_url,
    stream_token_create,
    stream_url,
    whisper_signature,
)

STREAM_ENDED_PATH = "/twilio/stream-ended"
WHISPER_PATH = "/twilio/whisper"
CALL_STATUS_PATH = "/twilio/call-status"
AMD_STATUS_PATH = "/twilio/amd-status"
# Why calls the bridge ends on purpose ended: an agent's max_call_minutes, its end_call tool
# (followed by the model's stated reason).
TIME_LIMIT_REASON = "time limit reached"
AGENT_ENDED_REASON = "agent ended the call"
# Outbound calls a machine answered: hung up at once, or after the agent left its message.
VOICEMAIL_REASON = "voicemail"
VOICEMAIL_LEFT_REASON = "voicemail: message left"
FAX_REASON = "fax machine answered"
# Inline TwiML sent through the REST API is limited to this many characters by Twilio.
TWIML_MAX_CHARS = 4000
WHISPER_MAX_CHARS = 400

# The stream's <Parameter>s: Twilio echoes them in `start`, which the signed token vouches for.
CALL_ID_PARAMETER = "callId"
TOKEN_PARAMETER = "token"
CALLER_PARAMETER = "caller"
DIALLED_PARAMETER = "dialled"
AGENT_PARAMETER = "agent"


def is_hang_up_reason(end_reason: str) -> bool:
    """A call the bridge ended on purpose: hung up, no fallback after it."""
    return (
        end_reason in (TIME_LIMIT_REASON, FAX_REASON)
        or end_reason.startswith(AGENT_ENDED_REASON)
        or end_reason.startswith(VOICEMAIL_REASON)
    )


def connect_stream_twiml(
    call_id: str,
    call_sid: str,
    *,
    caller: str = "",
    dialled: str = "",
    agent: str = "",
    outbound: bool = False,
) -> str:
    """Greeting (optional, inbound only: on an outbound call the agent speaks first, once
    answering machine detection allows), then the media stream. When we close the stream with
    the call still up, Twilio asks <Connect>'s action URL how to go on (stream_ended_twiml).
    An outbound call's TwiML is sent before Twilio assigns its CallSid: `call_sid` is "" and
    the stream token names the call id only."""
    response = VoiceResponse()
    if settings.TWILIO_GREETING and not outbound:
        response.say(settings.TWILIO_GREETING)
    connect = Connect(action=public_url(STREAM_ENDED_PATH))
    stream = connect.stream(url=stream_url())
    stream.parameter(name=CALL_ID_PARAMETER, value=call_id)
    stream.parameter(name=TOKEN_PARAMETER, value=stream_token_create(call_id, call_sid))
    # What tools need to know of the call, without a database read on the stream's start.
    for name, value in ((CALLER_PARAMETER, caller), (DIALLED_PARAMETER, dialled),
                        (AGENT_PARAMETER, agent)):  # fmt: skip
        if value:
            stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


def call_status_url(call_id: str) -> str:
    """An outbound call's StatusCallback: our call id in the URL (Twilio signs it), so a
    callback that comes before Twilio's answer to the create still finds the call."""
    return public_url(f"{CALL_STATUS_PATH}?{urlencode({'call': call_id})}")


def amd_status_url(call_id: str) -> str:
    """An outbound call's AsyncAmdStatusCallback (answering machine detection's result)."""
    return public_url(f"{AMD_STATUS_PATH}?{urlencode({'call': call_id})}")


def whisper_url(call_id: str, summary: str) -> str:
    """Where Twilio fetches what the person taking a warm transfer hears first."""
    summary = summary[:WHISPER_MAX_CHARS]
    query = urlencode({"call": call_id, "summary": summary,
                       "sig": whisper_signature(call_id, summary)})  # fmt: skip
    return public_url(f"{WHISPER_PATH}?{query}")


def transfer_twiml(*, number: str, caller_id: str, whisper_url: str | None) -> str:
    """The live call dials a person; with a whisper URL they hear it before being connected.
    The caller id is the number the caller dialled (ours), so the person sees a known line."""
    response = VoiceResponse()
    dial = Dial(caller_id=caller_id or None)
    dial.number(number, url=whisper_url)
    response.append(dial)
    twiml = str(response)
    if len(twiml) > TWIML_MAX_CHARS:  # a long summary: transfer without the whisper
        return transfer_twiml(number=number, caller_id=caller_id, whisper_url=None)
    return twiml


def whisper_twiml(summary: str) -> str:
    response = VoiceResponse()
    response.say(f"Call from the voice agent. {summary}".strip())
    return str(response)


def stream_ended_twiml(end_reason: str) -> str:
    """Hang up a call the bridge ended on purpose; otherwise (the model unreachable, the
    server stopping) the fallback: FALLBACK_MESSAGE, then FALLBACK_DIAL_NUMBER if set."""
    response = VoiceResponse()
    if not is_hang_up_reason(end_reason):
        if settings.FALLBACK_MESSAGE:
            response.say(settings.FALLBACK_MESSAGE)
        if settings.FALLBACK_DIAL_NUMBER:
            response.dial(settings.FALLBACK_DIAL_NUMBER)
            return str(response)
    response.hangup()
    return str(response)


def error_twiml(message: str) -> str:
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return str(response)
