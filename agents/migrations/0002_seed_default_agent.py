"""Seed the default agent, once, from the environment's REALTIME_* settings.

Before agents existed, the REALTIME_* variables configured the only assistant; this turns them
into the "Default" agent (slug "default"), plus a PhoneNumber for TWILIO_PHONE_NUMBER when it is
set and in E.164 form, so a fresh checkout (`manage.py migrate`, nothing configured) answers
calls with a working default agent, and an existing deployment keeps the assistant it had.

Validation is skipped on purpose: a deployment's odd value (a voice the model lacks, say) must
not stop `migrate`. Staff see the error against the field the first time they edit the agent.
Only what the database itself would refuse is brought into range (a number outside its
check constraint, an unknown turn detection, empty instructions), so the insert cannot fail.
Unapplying deletes nothing: the agent may have answered calls by then.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db import migrations

SLUG = "default"
FALLBACK_INSTRUCTIONS = (
    "You are a friendly, concise phone assistant. Keep answers short and speak naturally."
)
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def _setting(name: str, default: Any) -> Any:
    value = getattr(settings, name, None)
    return default if value in (None, "") else value


def _number_in(name: str, default: float, low: float, high: float) -> float:
    try:
        value = float(_setting(name, default))
    except (TypeError, ValueError):
        return default
    return min(max(value, low), high)


def default_agent_values() -> dict[str, Any]:
    """The default agent's columns, from the environment (what the database accepts)."""
    turn_detection = _setting("REALTIME_TURN_DETECTION", "server_vad")
    return {
        "name": "Default",
        "slug": SLUG,
        "is_default": True,
        "is_active": True,
        "instructions": str(_setting("REALTIME_INSTRUCTIONS", "")).strip()
        or FALLBACK_INSTRUCTIONS,
        "model": str(_setting("OPENAI_REALTIME_MODEL", "gpt-realtime"))[:64],
        "voice": str(_setting("REALTIME_VOICE", "alloy"))[:32],
        "turn_detection": turn_detection
        if turn_detection in ("server_vad", "semantic_vad")
        else "server_vad",
        "vad_threshold": _number_in("REALTIME_VAD_THRESHOLD", 0.5, 0.0, 1.0),
        "vad_prefix_padding_ms": int(_number_in("REALTIME_VAD_PREFIX_PADDING_MS", 300, 0, 2000)),
        "vad_silence_duration_ms": int(
            _number_in("REALTIME_VAD_SILENCE_DURATION_MS", 500, 100, 5000)
        ),
        "transcription_model": str(
            _setting("REALTIME_TRANSCRIPTION_MODEL", "gpt-4o-mini-transcribe")
        )[:64],
    }


def seed_default_agent(apps: Any, schema_editor: Any) -> None:
    Agent = apps.get_model("agents", "Agent")
    PhoneNumber = apps.get_model("agents", "PhoneNumber")
    if Agent.objects.filter(slug=SLUG).exists():
        return
    values = default_agent_values()
    # Another default (created by hand before this ran) stays the default.
    values["is_default"] = not Agent.objects.filter(is_default=True).exists()
    agent = Agent.objects.create(**values)
    number = str(getattr(settings, "TWILIO_PHONE_NUMBER", "") or "").strip()
    if E164.match(number) and not PhoneNumber.objects.filter(number=number).exists():
        PhoneNumber.objects.create(agent=agent, number=number, label="TWILIO_PHONE_NUMBER")


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]

    operations = [migrations.RunPython(seed_default_agent, migrations.RunPython.noop)]
