from django.db import migrations

QUEUES = [
    ("known-material", "Known-material matches", "Hash matches against banks of known material", False, 10),
    ("new-content", "New content", "Classifier and behaviour signals on material no bank knows", False, 20),
    ("text-surfaces", "Text surfaces", "Bios, names and descriptions matching indicator lists", False, 30),
    ("user-reports", "User reports", "Reports from users with no detector signal yet", False, 40),
    ("escalations", "Escalations", "Cases a reviewer escalated to a senior", True, 50),
]

REASONS = [
    ("csam-known", "Known child sexual abuse material confirmed", ["ban", "remove", "report"], 10),
    ("csam-new", "New child sexual abuse material confirmed", ["ban", "remove", "report"], 20),
    ("sexualised-minor", "Sexualised depiction of a minor", ["ban", "remove", "report"], 30),
    ("grooming", "Grooming or enticement of a minor", ["ban", "report"], 40),
    ("sextortion", "Sextortion", ["ban", "report"], 50),
    ("distribution-group", "Group organised to share exploitation material", ["ban", "report"], 60),
    ("adult-nudity", "Adult nudity against platform rules", ["remove"], 70),
    ("needs-specialist", "Needs a child-safety specialist", ["escalate"], 80),
    ("age-unclear", "Age of the person unclear", ["escalate"], 90),
    ("legal-question", "Legal or policy question", ["escalate"], 100),
    ("false-positive", "False positive: not what was flagged", ["dismiss"], 110),
    ("benign", "Benign content", ["dismiss"], 120),
    ("insufficient-evidence", "Not enough evidence to act", ["dismiss"], 130),
]


def seed(apps, schema_editor):
    ReviewQueue = apps.get_model("cases", "ReviewQueue")
    ReasonCode = apps.get_model("cases", "ReasonCode")
    for slug, name, description, senior_only, position in QUEUES:
        ReviewQueue.objects.get_or_create(slug=slug, defaults={
            "name": name, "description": description, "senior_only": senior_only, "position": position})
    for code, label, actions, position in REASONS:
        ReasonCode.objects.get_or_create(code=code, defaults={"label": label, "actions": actions, "position": position})


class Migration(migrations.Migration):
    dependencies = [("cases", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
