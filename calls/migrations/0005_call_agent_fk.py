# Call.agent becomes a foreign key to agents.Agent, in three steps (this schema change, the
# data migration 0006, then 0007 drops the old column): PostgreSQL refuses to alter a table
# in the transaction that just updated its rows with deferred foreign keys pending.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0002_seed_default_agent"),
        ("calls", "0004_transcript_inaudible_cached_token_kinds"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="call", name="call_agent_idx"),
        # The old string column held the dialled number; 0006 reads it, 0007 drops it.
        migrations.RenameField(model_name="call", old_name="agent", new_name="dialled_number"),
        migrations.AddField(
            model_name="call",
            name="agent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="calls",
                to="agents.agent",
            ),
        ),
        migrations.AddField(
            model_name="call",
            name="agent_version",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="call",
            name="agent_snapshot",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
