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
                    ('action', models.CharField(choices=[('account.two_factor_enrolled', 'Account Two Factor Enrolled'), ('account.two_factor_failed', 'Account Two Factor Failed'), ('account.two_factor_verified', 'Account Two Factor Verified'), ('account.viewing_preferences', 'Account Viewing Preferences'), ('bank.changed', 'Bank Changed'), ('bank.created', 'Bank Created'), ('bank.deleted', 'Bank Deleted'), ('bank.entries_added', 'Bank Entries Added'), ('bank.entry_added', 'Bank Entry Added'), ('bank.entry_changed', 'Bank Entry Changed'), ('bank.entry_removed', 'Bank Entry Removed'), ('bank.exported', 'Bank Exported'), ('bank.imported', 'Bank Imported'), ('case.ban', 'Case Ban'), ('case.ban.proposed', 'Case Ban Proposed'), ('case.ban.rejected', 'Case Ban Rejected'), ('case.claimed', 'Case Claimed'), ('case.dismiss', 'Case Dismiss'), ('case.dismiss.proposed', 'Case Dismiss Proposed'), ('case.dismiss.rejected', 'Case Dismiss Rejected'), ('case.escalate', 'Case Escalate'), ('case.escalate.proposed', 'Case Escalate Proposed'), ('case.escalate.rejected', 'Case Escalate Rejected'), ('case.opened', 'Case Opened'), ('case.released', 'Case Released'), ('case.remove', 'Case Remove'), ('case.remove.proposed', 'Case Remove Proposed'), ('case.remove.rejected', 'Case Remove Rejected'), ('case.report', 'Case Report'), ('case.report.proposed', 'Case Report Proposed'), ('case.report.rejected', 'Case Report Rejected'), ('case.signals_added', 'Case Signals Added'), ('case.undo', 'Case Undo'), ('cybertip.approved', 'Cybertip Approved'), ('cybertip.edited', 'Cybertip Edited'), ('cybertip.failed', 'Cybertip Failed'), ('cybertip.filed', 'Cybertip Filed'), ('cybertip.retract', 'Cybertip Retract'), ('cybertip.retried', 'Cybertip Retried'), ('cybertip.submitted', 'Cybertip Submitted'), ('cybertip.viewed', 'Cybertip Viewed'), ('enforcement.confirmed', 'Enforcement Confirmed'), ('evidence.destruction_requested', 'Evidence Destruction Requested'), ('evidence.hold_changed', 'Evidence Hold Changed'), ('evidence.hold_placed', 'Evidence Hold Placed'), ('evidence.integrity_alert', 'Evidence Integrity Alert'), ('evidence.purged', 'Evidence Purged'), ('evidence.revealed', 'Evidence Revealed'), ('evidence.viewed_blurred', 'Evidence Viewed Blurred'), ('item.received', 'Item Received'), ('legal.agency_message', 'Legal Agency Message'), ('legal.closed', 'Legal Closed'), ('legal.document_downloaded', 'Legal Document Downloaded'), ('legal.holds_placed', 'Legal Holds Placed'), ('legal.portal_viewed', 'Legal Portal Viewed'), ('legal.queue_viewed', 'Legal Queue Viewed'), ('legal.rejected', 'Legal Rejected'), ('legal.request_submitted', 'Legal Request Submitted'), ('legal.request_verified', 'Legal Request Verified'), ('legal.request_viewed', 'Legal Request Viewed'), ('legal.responded', 'Legal Responded'), ('legal.subjects_linked', 'Legal Subjects Linked'), ('match.suppressed', 'Match Suppressed'), ('metrics.transparency_exported', 'Metrics Transparency Exported'), ('qa.reviewed', 'Qa Reviewed'), ('report.received', 'Report Received'), ('subject.note_added', 'Subject Note Added')], db_index=True, max_length=64)),
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
