# The old string column is gone (0006 moved what it held); the agent column is indexed for the
# call list's agent filter, newest first, as the string was.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("calls", "0006_call_agent_from_number"),
    ]

    operations = [
        migrations.RemoveField(model_name="call", name="dialled_number"),
        migrations.AddIndex(
            model_name="call",
            index=models.Index(fields=["agent", "-started_at"], name="call_agent_idx"),
        ),
    ]
