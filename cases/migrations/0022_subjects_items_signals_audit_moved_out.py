"""The cases app's links now point at detection's subjects and items, and the moved models leave the
cases app's state. State only: every table keeps its name and rows."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0021_subjects_move_to_detection'),
        ('detection', '0005_subjects_items_signals_from_cases'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name='case',
                name='account',
                field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='cases', to='detection.account'),
            ),
            migrations.AlterField(
                model_name='subjectnote',
                name='account',
                field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='notes', to='detection.account'),
            ),
            migrations.RemoveField(
                model_name='signal',
                name='account',
            ),
            migrations.RemoveField(
                model_name='userreport',
                name='account',
            ),
            migrations.RemoveField(
                model_name='item',
                name='account',
            ),
            migrations.RemoveField(
                model_name='group',
                name='members',
            ),
            migrations.RemoveField(
                model_name='auditevent',
                name='actor',
            ),
            migrations.RemoveField(
                model_name='auditevent',
                name='case',
            ),
            migrations.RemoveField(
                model_name='auditevent',
                name='item',
            ),
            migrations.RemoveField(
                model_name='userreport',
                name='group',
            ),
            migrations.AlterField(
                model_name='case',
                name='group',
                field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='cases', to='detection.group'),
            ),
            migrations.RemoveField(
                model_name='membership',
                name='group',
            ),
            migrations.AlterField(
                model_name='subjectnote',
                name='group',
                field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='notes', to='detection.group'),
            ),
            migrations.RemoveField(
                model_name='item',
                name='group',
            ),
            migrations.RemoveField(
                model_name='signal',
                name='group',
            ),
            migrations.RemoveField(
                model_name='signal',
                name='item',
            ),
            migrations.AlterField(
                model_name='legalhold',
                name='item',
                field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='holds', to='detection.item'),
            ),
            migrations.RemoveField(
                model_name='userreport',
                name='item',
            ),
            migrations.AlterField(
                model_name='cybertipfile',
                name='item',
                field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='cybertip_files', to='detection.item'),
            ),
            migrations.AlterField(
                model_name='integrityalert',
                name='item',
                field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='integrity_alerts', to='detection.item'),
            ),
            migrations.RemoveField(
                model_name='signal',
                name='case',
            ),
            migrations.AlterField(
                model_name='legalrequest',
                name='accounts',
                field=models.ManyToManyField(blank=True, related_name='legal_requests', to='detection.account'),
            ),
            migrations.AlterField(
                model_name='legalrequest',
                name='groups',
                field=models.ManyToManyField(blank=True, related_name='legal_requests', to='detection.group'),
            ),
            migrations.DeleteModel(
                name='AccountLink',
            ),
            migrations.DeleteModel(
                name='Account',
            ),
            migrations.DeleteModel(
                name='AuditEvent',
            ),
            migrations.DeleteModel(
                name='Membership',
            ),
            migrations.DeleteModel(
                name='Group',
            ),
            migrations.DeleteModel(
                name='UserReport',
            ),
            migrations.DeleteModel(
                name='Item',
            ),
            migrations.DeleteModel(
                name='Signal',
            ),
            ]),
    ]
