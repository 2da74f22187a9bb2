"""Demo data: synthetic images, a demo known-material bank, accounts, groups, reports, logins."""

import io
import random

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group as Role
from django.db import transaction

from cases.actions.rules import save_rule
from cases.models import Agency, AgencyMember, Rule, RuleMode
from detection import intake
from detection.banks import import_hashes
from detection.detectors.hashing import digests, hash_image
from detection.models import Account, Bank
from reviewconsole.devtools import synthetic

BANK = "demo-known"
DEMO_USERS = [
    # (user name, password, role group, is_superuser)
    ("reviewer", "demo-reviewer-pass", "reviewer", False),
    ("analyst", "demo-analyst-pass", "analyst", False),  # investigates networks: search, pivots, blurred only
    ("specialist", "demo-specialist-pass", "specialist", False),
    ("senior", "demo-senior-pass", "senior", False),
    ("admin", "demo-admin-pass", None, True),
    ("liaison", "demo-liaison-pass", "liaison", False),
    ("officer", "demo-officer-pass", "officer", False),  # an agency's officer: the request portal only
]
DEMO_AGENCY = "Demo County Police"
GEOMETRIC_COPIES = {46: "mirrored", 47: "rotated_90", 48: "letterboxed", 49: "pillarboxed"}
# A plain one-page PDF standing in for a subpoena.
DEMO_PDF = (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
            b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")
KNOWN_SEEDS = range(1, 61)          # their hashes form the demo bank
SHARED_KNOWN = range(1, 41)         # altered copies of these are uploaded
EXACT_COPIES = range(41, 46)        # byte-identical copies are uploaded
UNRELATED = range(1001, 1241)       # images no bank knows


def ensure_users():
    User = get_user_model()
    for username, password, role, superuser in DEMO_USERS:
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_password(password)
            user.is_staff = user.is_superuser = superuser
            user.save()
        if role == "officer":
            agency, _ = Agency.objects.get_or_create(name=DEMO_AGENCY, defaults={"jurisdiction": "Demo County"})
            AgencyMember.objects.get_or_create(user=user, defaults={"agency": agency, "badge": "D-1001"})
        elif role:
            user.groups.add(Role.objects.get(name=role))
    return DEMO_USERS


def _bank_lines(seeds):
    lines = ["hash,type,label"]
    for seed in seeds:
        data = synthetic.encode(synthetic.make_image(seed))
        hashes = hash_image(data)
        md5, sha256 = digests(data)
        label = f"demo-{seed}"
        lines += [f"{hashes.pdq},pdq,{label}", f"{hashes.phash},phash,{label}", f"{hashes.dhash},dhash,{label}",
                  f"{md5},md5,{label}", f"{sha256},sha256,{label}"]
    return "\n".join(lines)


# How far some known pictures travelled: the match names the spread and the case is raised.
DEMO_SPREAD = {0: {"forward_count": 312, "forward_chats": 140, "forwarded_many": True},
               1: {"forward_count": 18, "forward_chats": 9, "forwarded_many": False},
               2: {"forwarded_many": True}}
# A group whose invite link is listed on a public site and whose members come through a referring app
# (reserved .example names, no real site or app); the referrals page groups them by source.
PREVENTION_GROUP_FACTS = {
    "demo-grp-1": {
        "invite_listings": [
            {"source": "https://links-directory.example/groups/weekend", "kind": "site",
             "seen_at": "2026-11-28T09:30:00Z"},
            {"source": "GroupFinder", "kind": "app", "seen_at": "2026-11-30T17:05:00Z"}],
        "referral_joins": [{"app": "GroupFinder", "joins": 46}],
        "invite_join_share": 0.93},
    "demo-grp-2": {"invite_listings": [], "referral_joins": [], "invite_join_share": 0.4},
}


def load(progress=None):
    """Create everything once; returns False when demo data was already there."""
    if Account.objects.filter(external_id="demo-acct-01").exists():
        return False
    tick = progress or (lambda n=1: None)
    rng = random.Random(7)
    with transaction.atomic():
        import_hashes(BANK, io.StringIO(_bank_lines(KNOWN_SEEDS)), fmt="csv",
                      description="Hashes of synthetic demo images standing in for known material")
        # It stands in for a hotline's verified list, so that the demo rule below can be tried on it.
        Bank.objects.filter(name=BANK).update(trust="verified")
        _demo_rule()
    tick(len(KNOWN_SEEDS))
    for n in range(1, 13):
        intake.upsert_account(f"demo-acct-{n:02d}", {
            "screen_name": f"{synthetic.WORDS[n % 10]}_{n}", "display_name": f"Demo user {n}",
            "bio": rng.choice(["Photos of my garden", "Hiking, maps and weather", "Just here for the memes",
                               "DM for trades", "Collector of rare stamps"]),
            "age_band": rng.choice(["18+", "18+", "16-17", "13-15"]),
        })
    groups = [("demo-grp-1", "Weekend trades", 340), ("demo-grp-2", "Map lovers", 58),
              ("demo-grp-3", "Quiet corner", 12)]
    for external_id, name, size in groups:
        members = [f"demo-acct-{n:02d}" for n in range(1, 13) if rng.random() < 0.5]
        facts = {"invite_link_resets_7d": rng.randint(0, 9), **PREVENTION_GROUP_FACTS.get(external_id, {})}
        intake.upsert_group(external_id, {"name": name, "description": f"Demo group: {name.lower()}",
                                          "member_count": size, "facts": facts},
                            members=members)
    edits = list(synthetic.EDITS.values())
    for i, seed in enumerate(SHARED_KNOWN):
        img = edits[i % len(edits)](synthetic.make_image(seed))
        account = f"demo-acct-{1 + i % 5:02d}"
        intake.submit_file(synthetic.encode(img, quality=rng.randint(60, 90)), account_id=account,
                           group_id="demo-grp-1" if i % 2 else None, original_name=f"IMG_{seed:04d}.jpg",
                           external_id=f"demo-item-k{seed}", actor_label="demo", spread=DEMO_SPREAD.get(i))
        tick()
    for seed in EXACT_COPIES:
        intake.submit_file(synthetic.encode(synthetic.make_image(seed)), account_id="demo-acct-06",
                           group_id="demo-grp-2", original_name=f"copy_{seed}.jpg", external_id=f"demo-item-x{seed}",
                           actor_label="demo")
        tick()
    for seed in UNRELATED:
        account = f"demo-acct-{rng.randint(1, 12):02d}"
        fmt = rng.choice(["JPEG", "JPEG", "PNG"])
        intake.submit_file(synthetic.encode(synthetic.make_image(seed), fmt=fmt), account_id=account,
                           original_name=f"photo_{seed}.{fmt.lower()}", external_id=f"demo-item-u{seed}",
                           actor_label="demo")
        tick()
    # Bad files a platform will send sooner or later: they end `rejected`, with the reason shown.
    intake.submit_file(synthetic.encode(synthetic.make_image(9999))[:3000], account_id="demo-acct-07",
                       original_name="truncated.jpg", actor_label="demo")
    intake.submit_file(b"GIF89a<script>alert(1)</script>", account_id="demo-acct-07", original_name="x.gif",
                       actor_label="demo")
    _demo_reporters()
    intake.submit_report(reporter="demo-acct-11", reason="grooming", account_id="demo-acct-08",
                         comment="Keeps asking my little sister for pictures", actor_label="demo")
    intake.submit_report(reporter="demo-acct-12", reason="csam", group_id="demo-grp-1",
                         comment="This group trades awful pictures", actor_label="demo")
    intake.submit_report(reporter="demo-acct-10", reason="csam", account_id="demo-acct-01", actor_label="demo")
    # A 13-15-year-old reported for nudity by the adult below who starts chats with teens: a
    # possible child victim, raised, linked to the adult, and decided with the victim policy.
    intake.upsert_account("demo-acct-12", {"age_band": "13-15"})
    intake.submit_report(reporter="demo-acct-09", reason="nudity", account_id="demo-acct-12", actor_label="demo")
    # Mirrored, rotated and letterboxed copies of known pictures: matched, with what was undone.
    for seed, edit in GEOMETRIC_COPIES.items():
        img = synthetic.GEOMETRIC_EDITS[edit](synthetic.make_image(seed))
        intake.submit_file(synthetic.encode(img), account_id="demo-acct-05", original_name=f"{edit}_{seed}.jpg",
                           external_id=f"demo-item-g{seed}", actor_label="demo")
        tick()
    # A bio written to slip past a word list, and an adult starting chats with teens it does not know.
    intake.upsert_account("demo-acct-08", {"bio": "how old r u? s e n d p1cs 📸 and add me on the other app"})
    intake.upsert_account("demo-acct-09", {"age_band": "18+", "facts": {
        "teen_non_contacts_initiated_7d": 14, "non_contacts_initiated_7d": 17, "blocked_by_teens_30d": 2}})
    # An account that many strangers block or report when it first messages them, and whose group adds
    # are refused: the first-contact features of its account risk.
    intake.upsert_account("demo-acct-03", {"facts": {
        "first_contact_blocks_30d": 14, "first_contact_reports_30d": 6, "group_adds_refused_30d": 25}})
    _demo_legal_request()
    _demo_tags()
    return True


def _demo_reporters():
    """A trusted flagger (a hotline analyst's account, whose reports weigh more) and a reporter a senior
    muted for mass-reporting a rival: the case pages show each report's standing."""
    from cases.actions import reporters
    from cases.actions.tags import tag_subject
    from cases.models import TagKind
    from detection.models import Reporter

    senior = get_user_model().objects.filter(username="senior").first()
    if senior is None:
        return
    flagger, _ = intake.upsert_account("demo-acct-11", {"display_name": "Hotline volunteer"})
    tag_subject(senior, flagger, TagKind.TRUSTED_FLAGGER, note="Volunteer analyst of a partner hotline")
    noisy, _ = Reporter.objects.get_or_create(external_id="demo-acct-10", defaults={"reports": 12, "dismissed": 11,
                                                                                     "upheld": 1})
    reporters.mute_reporter(senior, noisy.pk, reason="Reports every post of a rival; 11 of 12 dismissed")


def _demo_tags():
    from cases.actions.tags import tag_subject
    from cases.models import TagKind

    senior = get_user_model().objects.filter(username="senior").first()
    if senior is None:
        return
    tag_subject(senior, Account.objects.get(external_id="demo-acct-12"), TagKind.POSSIBLE_MINOR_VICTIM,
                note="Age band 13-15; reported for nudity by an adult who starts chats with teens")
    tag_subject(senior, Account.objects.get(external_id="demo-acct-05"), TagKind.SENIOR_ONLY,
                note="Subject of an open police preservation request: coordinate with the liaison first")


def _demo_rule():
    """A rule in shadow mode: the Rules page shows what it would have done to the demo cases, and a
    senior can backtest it and turn it on (it would then decide the known-material cases itself)."""
    rule = Rule(code="verified-known-near", title="Known material, verified bank, near match",
                description="An exact or near PDQ match to a verified hotline list is certain enough to act on; "
                            "weak pHash/dHash-only matches and unverified lists stay with people.")
    save_rule(None, rule, effect="apply_policy", policy_code="csam-known", mode=RuleMode.SHADOW,
              conditions_list=[{"field": "signal.kind", "op": "eq", "value": "hash_match"},
                               {"field": "bank.trust", "op": "eq", "value": "verified"},
                               {"field": "match.kind", "op": "in", "value": ["exact", "pdq", "video"]},
                               {"field": "match.distance", "op": "le", "value": 24}],
              note="demo: shadow mode")


def _demo_legal_request():
    from datetime import timedelta

    from django.utils import timezone

    from cases.actions import legal

    officer = get_user_model().objects.filter(agency_member__agency__name=DEMO_AGENCY).first()
    if officer is None:
        return
    legal.submit_request(officer, kind="preservation", reference="DCP-2026-0117",
                         identifiers=[{"type": "account", "id": "demo-acct-01"}],
                         description="Please preserve all content and subscriber records of this account for 90 days "
                                     "pending legal process.",
                         due_at=timezone.now() + timedelta(days=7), document=DEMO_PDF,
                         document_name="preservation-letter.pdf")


def total_steps():
    return len(KNOWN_SEEDS) + len(SHARED_KNOWN) + len(EXACT_COPIES) + len(UNRELATED) + len(GEOMETRIC_COPIES)
