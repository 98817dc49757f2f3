"""TwiML answers, built with the twilio package's VoiceResponse."""

from __future__ import annotations

from django.conf import settings
from twilio.twiml.voice_response import Connect, VoiceResponse

from telephony.security import stream_token_create, stream_url

CALL_ID_PARAMETER = "callId"
TOKEN_PARAMETER = "token"


def connect_stream_twiml(call_id: str, call_sid: str) -> str:
    """Greeting (optional), then the media stream; what follows <Connect> runs only once we
    close the stream, which is how the fallback takes over when the model is unreachable."""
    response = VoiceResponse()
    if settings.TWILIO_GREETING:
        response.say(settings.TWILIO_GREETING)
    connect = Connect()
    stream = connect.stream(url=stream_url())
    stream.parameter(name=CALL_ID_PARAMETER, value=call_id)
    stream.parameter(name=TOKEN_PARAMETER, value=stream_token_create(call_id, call_sid))
    response.append(connect)
    if settings.FALLBACK_MESSAGE:
        response.say(settings.FALLBACK_MESSAGE)
    if settings.FALLBACK_DIAL_NUMBER:
        response.dial(settings.FALLBACK_DIAL_NUMBER)
    return str(response)


def error_twiml(message: str) -> str:
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return str(response)
