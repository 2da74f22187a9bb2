"""Subjects, items, signals and user reports move to the detection app: first loosen their links in
the cases app's state. State only: no table or row changes."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0020_account_links'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveField(
                model_name='membership',
                name='account',
            ),
            ]),
    ]
