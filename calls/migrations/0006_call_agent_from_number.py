"""Existing calls get their agent from the number they dialled.

A call to a number that is an agent's PhoneNumber (after agents 0002, the default agent has
TWILIO_PHONE_NUMBER) gets that agent. Any other call keeps its number in
CallMetadata.custom["dialled_number"] (a metadata row is created if it had none), so nothing
the old column held is lost. Such calls have no agent, version or snapshot: what those calls
were told was never recorded. Unapplying writes the numbers back into the old column.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

BATCH = 500


def _numbers_keep(apps: Any, calls: list[tuple[Any, str]]) -> None:
    """custom["dialled_number"] on each call's metadata row, created where missing."""
    CallMetadata = apps.get_model("calls", "CallMetadata")
    numbers = dict(calls)
    rows = list(CallMetadata.objects.filter(call_id__in=numbers))
    for row in rows:
        row.custom = {**(row.custom or {}), "dialled_number": numbers[row.call_id]}
    CallMetadata.objects.bulk_update(rows, ["custom"])
    have = {row.call_id for row in rows}
    CallMetadata.objects.bulk_create(
        [
            CallMetadata(call_id=call_id, custom={"dialled_number": number})
            for call_id, number in calls
            if call_id not in have
        ]
    )


def calls_link_agents(apps: Any, schema_editor: Any) -> None:
    Call = apps.get_model("calls", "Call")
    PhoneNumber = apps.get_model("agents", "PhoneNumber")
    for number, agent_id in PhoneNumber.objects.values_list("number", "agent_id"):
        Call.objects.filter(agent__isnull=True, dialled_number=number).update(agent_id=agent_id)
    unmatched = (
        Call.objects.filter(agent__isnull=True)
        .exclude(dialled_number="")
        .order_by("pk")
        .values_list("pk", "dialled_number")
    )
    batch: list[tuple[Any, str]] = []
    for row in unmatched.iterator(chunk_size=BATCH):
        batch.append(row)
        if len(batch) == BATCH:
            _numbers_keep(apps, batch)
            batch = []
    if batch:
        _numbers_keep(apps, batch)


def calls_unlink_agents(apps: Any, schema_editor: Any) -> None:
    Call = apps.get_model("calls", "Call")
    CallMetadata = apps.get_model("calls", "CallMetadata")
    PhoneNumber = apps.get_model("agents", "PhoneNumber")
    kept = CallMetadata.objects.filter(custom__has_key="dialled_number")
    for row in kept.iterator(chunk_size=BATCH):
        custom = dict(row.custom)
        number = str(custom.pop("dialled_number"))[:64]
        Call.objects.filter(pk=row.call_id).update(dialled_number=number)
        row.custom = custom
        row.save(update_fields=["custom"])
    first_numbers: dict[Any, str] = {}
    for number, agent_id in PhoneNumber.objects.order_by("-created_at", "-pk").values_list(
        "number", "agent_id"
    ):
        first_numbers[agent_id] = number  # the oldest number of each agent wins
    for agent_id, number in first_numbers.items():
        Call.objects.filter(agent_id=agent_id, dialled_number="").update(dialled_number=number)


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0002_seed_default_agent"),
        ("calls", "0005_call_agent_fk"),
    ]

    operations = [migrations.RunPython(calls_link_agents, calls_unlink_agents)]
