"""What the contract run's throwaway database holds before the fuzzer starts.

Run by contract/run.py in a subprocess with the run's environment (its DATABASE_URL, its
RECORDING_STORAGE_PATH), after `manage.py migrate`. Prints one JSON line: the API token and the
ids the hooks point some generated requests at, so that detail pages, the recording and notes
are exercised on a real call rather than only answered 404.

Never run it against a database you care about: it adds a user with every calls and agents
permission.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import secrets
import sys
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONTRACT_USERNAME = "api-contract"
AGENT_SLUG = "contract-agent"
AGENT_NUMBER = "+14155550199"
CALL_SID = "CA" + "c0" * 16
SECOND_CALL_SID = "CA" + "c1" * 16


def wav_bytes(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A short stereo 16-bit WAV, as the recorder writes them (the bytes are not listened to)."""
    frames = int(seconds * rate)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(bytes(i % 251 for i in range(frames * 4)))
    return buffer.getvalue()


def _user_with_every_permission() -> Any:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(username=CONTRACT_USERNAME, password=secrets.token_hex(16))
    # Every permission of the two apps the API serves, so no operation is refused for want of
    # one (403 stays reachable only through the checks' own requests without credentials).
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=("calls", "agents"))
    )
    return user


def _call_with_everything(agent: Any, author: Any) -> Any:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.utils import timezone

    from calls import services
    from calls.models import Analytics, Call, CallMetadata, Recording, Transcript

    started = timezone.now() - dt.timedelta(hours=2)
    call = Call.objects.create(
        call_sid=CALL_SID,
        stream_sid="MZ" + "c0" * 16,
        account_sid="AC" + "c0" * 16,
        caller="+14155550123",
        agent=agent,
        agent_version=agent.version,
        agent_snapshot={"version": agent.version, "agent": {"voice": agent.voice}, "session": {}},
        status="completed",
        started_at=started,
        answered_at=started + dt.timedelta(seconds=2),
        ended_at=started + dt.timedelta(seconds=62),
        duration_s=60.0,
        end_reason="caller hung up",
    )
    lines = [
        ("agent", "Hello, how can I help?", 0, 1500, False, False),
        ("caller", "I would like to check my order.", 2000, 4200, False, False),
        ("agent", "Of course, what is the order number?", 4800, 7000, True, False),
        ("caller", "[inaudible]", 7100, 7600, False, True),
    ]
    for sequence, (speaker, text, start, end, interrupted, inaudible) in enumerate(lines):
        Transcript.objects.create(
            call=call,
            sequence=sequence,
            speaker=speaker,
            text=text,
            start_ms=start,
            end_ms=end,
            interrupted=interrupted,
            inaudible=inaudible,
            confidence=None if inaudible else 0.9,
        )
    Analytics.objects.create(
        call=call,
        sentiment_label="positive",
        sentiment_score=0.6,
        caller_talk_s=12.5,
        agent_talk_s=20.0,
        silence_s=27.5,
        turns=2,
        interruptions=1,
        latency_ms_avg=640.0,
        latency_ms_p50=600.0,
        latency_ms_p95=900.0,
        latency_ms_max=950.0,
        input_audio_tokens=1200,
        output_audio_tokens=2400,
        estimated_cost_usd="0.192000",
    )
    CallMetadata.objects.create(
        call=call, language="en", country="US", state="CA", city="San Francisco"
    )
    data = wav_bytes()
    name = default_storage.save(f"recordings/{call.pk}.wav", ContentFile(data))
    Recording.objects.create(call=call, file=name, size_bytes=len(data), duration_s=1.0)
    services.call_note_add(call_id=str(call.pk), author=author, text="Called about an order.")
    return call


def seed() -> dict[str, str]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bridge_project.settings")
    django.setup()

    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from agents import services as agent_services
    from calls.models import Call

    user = _user_with_every_permission()
    token = Token.objects.create(user=user, key=secrets.token_hex(20))
    agent = agent_services.agent_create(
        fields={
            "name": "Contract agent",
            "slug": AGENT_SLUG,
            "instructions": "You answer the API contract run's calls. Be brief.",
            "greeting": "Hello from the contract run.",
        },
        phone_numbers=(AGENT_NUMBER,),
    )
    call = _call_with_everything(agent, user)
    # A second call, no agent and no recording: the list has more than one row to order and
    # filter, and a detail page with the empty parts (no analytics, no metadata) exists.
    Call.objects.create(
        call_sid=SECOND_CALL_SID, caller="+14155550124", status="no-answer",
        started_at=timezone.now() - dt.timedelta(days=1),
    )  # fmt: skip
    return {"token": token.key, "call_id": str(call.pk), "agent_slug": agent.slug}


if __name__ == "__main__":
    print(json.dumps(seed()))
