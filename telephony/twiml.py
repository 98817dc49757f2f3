"""TwiML answers, built with the twilio package's VoiceResponse."""

from __future__ import annotations

from django.conf import settings
from twilio.twiml.voice_response import Connect, VoiceResponse

from telephony.security import public_url, stream_token_create, stream_url

STREAM_ENDED_PATH = "/twilio/stream-ended"
# Why a call that reached its agent's max_call_minutes ended.
TIME_LIMIT_REASON = "time limit reached"

CALL_ID_PARAMETER = "callId"
TOKEN_PARAMETER = "token"


# Calls the bridge ends on purpose (see CallBridge.end(hang_up=True)): no fallback after them.
HANG_UP_REASONS = frozenset({TIME_LIMIT_REASON})


def connect_stream_twiml(call_id: str, call_sid: str) -> str:
    """Greeting (optional), then the media stream. When we close the stream with the call
    still up, Twilio asks <Connect>'s action URL how to go on (stream_ended_twiml)."""
    response = VoiceResponse()
    if settings.TWILIO_GREETING:
        response.say(settings.TWILIO_GREETING)
    connect = Connect(action=public_url(STREAM_ENDED_PATH))
    stream = connect.stream(url=stream_url())
    stream.parameter(name=CALL_ID_PARAMETER, value=call_id)
    stream.parameter(name=TOKEN_PARAMETER, value=stream_token_create(call_id, call_sid))
    response.append(connect)
    return str(response)


def stream_ended_twiml(end_reason: str) -> str:
    """Hang up a call the bridge ended on purpose; otherwise (the model unreachable, the
    server stopping) the fallback: FALLBACK_MESSAGE, then FALLBACK_DIAL_NUMBER if set."""
    response = VoiceResponse()
    if end_reason not in HANG_UP_REASONS:
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
