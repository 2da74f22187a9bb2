from django.db import migrations

SLA_MINUTES = {"known-material": 60, "new-content": 4 * 60, "text-surfaces": 24 * 60, "user-reports": 24 * 60,
               "escalations": 4 * 60}


def set_slas(apps, schema_editor):
    ReviewQueue = apps.get_model("cases", "ReviewQueue")
    for slug, minutes in SLA_MINUTES.items():
        ReviewQueue.objects.filter(slug=slug).update(sla_minutes=minutes)
    Case = apps.get_model("cases", "Case")
    for case in Case.objects.all().only("pk", "priority"):
        Case.objects.filter(pk=case.pk).update(base_priority=case.priority)


class Migration(migrations.Migration):
    dependencies = [("cases", "0008_sla_and_ageing")]
    operations = [migrations.RunPython(set_slas, migrations.RunPython.noop)]
