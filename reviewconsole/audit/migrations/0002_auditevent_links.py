"""The audit log's link to items, which now live in the detection app. State only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('audit', '0001_auditevent_from_cases'),
        ('detection', '0005_subjects_items_signals_from_cases'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AddField(
                model_name='auditevent',
                name='item',
                field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='audit_events', to='detection.item'),
            ),
            ]),
    ]
