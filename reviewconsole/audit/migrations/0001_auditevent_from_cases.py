"""The audit log moves to an app of its own. Its table keeps the name cases_auditevent, so this is
state only; its content type moves along."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


MOVED = ['auditevent']


def relabel(apps, old, new):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not ContentType.objects.filter(app_label=new, model=model).exists():
            ContentType.objects.filter(app_label=old, model=model).update(app_label=new)


def move_content_types(apps, schema_editor):
    relabel(apps, "cases", "audit")


def move_content_types_back(apps, schema_editor):
    relabel(apps, "audit", "cases")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('cases', '0020_account_links'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='AuditEvent',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('actor_label', models.CharField(help_text="User name, API token name or 'system'", max_length=150)),
                    ('action', models.CharField(db_index=True, help_text='An event name from reviewconsole.audit.events.Event', max_length=64)),
                    ('object_type', models.CharField(blank=True, max_length=64)),
                    ('object_id', models.CharField(blank=True, max_length=64)),
                    ('details', models.JSONField(blank=True, default=dict)),
                    ('ip', models.GenericIPAddressField(blank=True, null=True)),
                    ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, to=settings.AUTH_USER_MODEL)),
                    ('case', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='audit_events', to='cases.case')),
                ],
                options={
                    'db_table': 'cases_auditevent',
                    'ordering': ['-created_at', '-id'],
                },
            ),
            ]),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
