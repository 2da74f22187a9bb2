"""Subjects, items, signals and user reports now belong to the detection app. Their tables keep the
names they had (cases_*), so this is state only; content types move along, which keeps admin log
entries and permissions pointing at the same rows."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


MOVED = ['account', 'accountlink', 'group', 'membership', 'item', 'signal', 'userreport']


def relabel(apps, old, new):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not ContentType.objects.filter(app_label=new, model=model).exists():
            ContentType.objects.filter(app_label=old, model=model).update(app_label=new)


def move_content_types(apps, schema_editor):
    relabel(apps, "cases", "detection")


def move_content_types_back(apps, schema_editor):
    relabel(apps, "detection", "cases")


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('cases', '0021_subjects_move_to_detection'),
        ('detection', '0004_bank_labels_exchange'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='Account',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('external_id', models.CharField(max_length=255, unique=True)),
                    ('screen_name', models.CharField(blank=True, max_length=255)),
                    ('display_name', models.CharField(blank=True, max_length=255)),
                    ('bio', models.TextField(blank=True)),
                    ('email', models.CharField(blank=True, max_length=320)),
                    ('phone', models.CharField(blank=True, max_length=64)),
                    ('age_band', models.CharField(blank=True, help_text='e.g. 13-15, 16-17, 18+', max_length=16)),
                    ('registered_at', models.DateTimeField(blank=True, null=True)),
                    ('facts', models.JSONField(blank=True, default=dict, help_text='Behaviour facts sent by the platform')),
                    ('status', models.CharField(choices=[('active', 'Active'), ('banned', 'Banned')], default='active', max_length=16)),
                    ('banned_at', models.DateTimeField(blank=True, db_index=True, null=True)),
                    ('analysed_at', models.DateTimeField(blank=True, help_text='Text surfaces and risk last scored (pending while null or stale)', null=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                ],
                options={
                    'db_table': 'cases_account',
                    'ordering': ['external_id'],
                },
            ),
            migrations.CreateModel(
                name='Group',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('external_id', models.CharField(max_length=255, unique=True)),
                    ('name', models.CharField(blank=True, max_length=255)),
                    ('description', models.TextField(blank=True)),
                    ('member_count', models.PositiveIntegerField(default=0)),
                    ('facts', models.JSONField(blank=True, default=dict, help_text='Behaviour facts sent by the platform')),
                    ('status', models.CharField(choices=[('active', 'Active'), ('banned', 'Banned')], default='active', max_length=16)),
                    ('banned_at', models.DateTimeField(blank=True, db_index=True, null=True)),
                    ('analysed_at', models.DateTimeField(blank=True, help_text='Text surfaces and risk last scored (pending while null or stale)', null=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                ],
                options={
                    'db_table': 'cases_group',
                    'ordering': ['external_id'],
                },
            ),
            migrations.CreateModel(
                name='Item',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('kind', models.CharField(choices=[('image', 'Image'), ('video', 'Video'), ('text', 'Text')], default='image', max_length=16)),
                    ('external_id', models.CharField(blank=True, max_length=255)),
                    ('original_name', models.CharField(blank=True, max_length=255)),
                    ('declared_type', models.CharField(blank=True, max_length=127)),
                    ('size', models.PositiveBigIntegerField(default=0)),
                    ('storage_path', models.CharField(blank=True, help_text='Relative to EVIDENCE_ROOT', max_length=512)),
                    ('text', models.TextField(blank=True)),
                    ('uploaded_at', models.DateTimeField(blank=True, null=True)),
                    ('ip', models.GenericIPAddressField(blank=True, null=True)),
                    ('md5', models.CharField(db_index=True, max_length=32)),
                    ('sha256', models.CharField(db_index=True, max_length=64)),
                    ('detected_format', models.CharField(blank=True, max_length=16)),
                    ('width', models.PositiveIntegerField(blank=True, null=True)),
                    ('height', models.PositiveIntegerField(blank=True, null=True)),
                    ('pdq', models.CharField(blank=True, max_length=64)),
                    ('pdq_quality', models.PositiveSmallIntegerField(blank=True, null=True)),
                    ('phash', models.CharField(blank=True, max_length=16)),
                    ('dhash', models.CharField(blank=True, max_length=16)),
                    ('status', models.CharField(choices=[('queued', 'Queued'), ('scanned', 'Scanned'), ('rejected', 'Rejected')], default='queued', max_length=16)),
                    ('reject_reason', models.CharField(blank=True, max_length=500)),
                    ('scan_attempts', models.PositiveSmallIntegerField(default=0)),
                    ('scan_token', models.CharField(blank=True, max_length=32)),
                    ('scan_started_at', models.DateTimeField(blank=True, null=True)),
                    ('enqueued_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('scanned_at', models.DateTimeField(blank=True, null=True)),
                    ('removed_at', models.DateTimeField(blank=True, null=True)),
                    ('purged_at', models.DateTimeField(blank=True, help_text='Evidence bytes destroyed', null=True)),
                    ('verified_at', models.DateTimeField(blank=True, help_text='Last SHA-256 check of the stored bytes', null=True)),
                    ('frame_hashes', models.JSONField(blank=True, default=list, help_text='Video/animation: [{t, pdq, quality}] per sampled frame')),
                    ('classified_at', models.DateTimeField(blank=True, help_text='Classifiers ran (new-content detection)', null=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('account', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='items', to='detection.account')),
                    ('group', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='items', to='detection.group')),
                ],
                options={
                    'db_table': 'cases_item',
                    'ordering': ['-created_at'],
                },
            ),
            migrations.CreateModel(
                name='Membership',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('role', models.CharField(blank=True, max_length=32)),
                    ('joined_at', models.DateTimeField(blank=True, null=True)),
                    ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='detection.account')),
                    ('group', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='detection.group')),
                ],
                options={
                    'db_table': 'cases_membership',
                },
            ),
            migrations.AddField(
                model_name='group',
                name='members',
                field=models.ManyToManyField(related_name='groups', through='detection.Membership', to='detection.account'),
            ),
            migrations.CreateModel(
                name='Signal',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('kind', models.CharField(choices=[('hash_match', 'Known-material hash match'), ('classifier', 'Classifier'), ('text', 'Text surface'), ('behaviour', 'Behaviour'), ('user_report', 'User report')], max_length=32)),
                    ('detector', models.CharField(help_text='e.g. pdq, md5, phash, user_report', max_length=64)),
                    ('label', models.CharField(max_length=128)),
                    ('score', models.FloatField(help_text='Confidence 0..1')),
                    ('severity', models.PositiveSmallIntegerField(default=50, help_text='0..100')),
                    ('explanation', models.TextField()),
                    ('details', models.JSONField(blank=True, default=dict)),
                    ('dedupe_key', models.CharField(help_text='Same finding twice gives one signal', max_length=255)),
                    ('triaged_at', models.DateTimeField(blank=True, null=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('account', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='signals', to='detection.account')),
                    ('case', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='signals', to='cases.case')),
                    ('group', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='signals', to='detection.group')),
                    ('item', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='signals', to='detection.item')),
                ],
                options={
                    'db_table': 'cases_signal',
                    'ordering': ['-severity', '-score'],
                },
            ),
            migrations.CreateModel(
                name='UserReport',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('reporter', models.CharField(help_text="Reporter's account id on the platform", max_length=255)),
                    ('reason', models.CharField(max_length=64)),
                    ('comment', models.TextField(blank=True)),
                    ('external_id', models.CharField(blank=True, max_length=255)),
                    ('triaged_at', models.DateTimeField(blank=True, null=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('account', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='reports', to='detection.account')),
                    ('group', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='reports', to='detection.group')),
                    ('item', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='reports', to='detection.item')),
                ],
                options={
                    'db_table': 'cases_userreport',
                    'ordering': ['-created_at'],
                },
            ),
            migrations.CreateModel(
                name='AccountLink',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('kind', models.CharField(choices=[('phone', 'Phone hash'), ('device', 'Device hash')], max_length=8)),
                    ('value', models.CharField(max_length=128)),
                    ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='links', to='detection.account')),
                ],
                options={
                    'db_table': 'cases_accountlink',
                    'indexes': [models.Index(fields=['kind', 'value'], name='account_link_lookup_idx')],
                    'constraints': [models.UniqueConstraint(fields=('account', 'kind', 'value'), name='unique_account_link')],
                },
            ),
            migrations.AddIndex(
                model_name='item',
                index=models.Index(condition=models.Q(('status', 'queued')), fields=['enqueued_at'], name='item_pending_idx'),
            ),
            migrations.AddIndex(
                model_name='item',
                index=models.Index(fields=['created_at'], name='item_created_idx'),
            ),
            migrations.AddIndex(
                model_name='item',
                index=models.Index(fields=['scanned_at'], name='item_scanned_idx'),
            ),
            migrations.AddConstraint(
                model_name='membership',
                constraint=models.UniqueConstraint(fields=('account', 'group'), name='unique_membership'),
            ),
            migrations.AddIndex(
                model_name='signal',
                index=models.Index(condition=models.Q(('triaged_at__isnull', True)), fields=['created_at'], name='signal_untriaged_idx'),
            ),
            migrations.AddIndex(
                model_name='signal',
                index=models.Index(fields=['created_at'], name='signal_created_idx'),
            ),
            migrations.AddConstraint(
                model_name='signal',
                constraint=models.UniqueConstraint(fields=('dedupe_key',), name='unique_signal_dedupe_key'),
            ),
            ]),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
