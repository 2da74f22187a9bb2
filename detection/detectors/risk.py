"""Explainable risk scores for groups and accounts, and the teen-contact signal: facts in, features out.

Pure: plain dicts in, Feature and Assessment objects out, no database. detection.analysis gathers
the facts from the rows and the platform's behaviour facts, and turns assessments into signals.

How a score is built. Each feature turns one fact into a strength between 0 and 1 that rises
linearly from its floor to its saturation point (beyond which more of the same adds nothing), and
contributes `weight x strength`. Contributions combine like independent pieces of evidence:

    score = 1 - (1 - c1) x (1 - c2) x ...

so a feature alone can lift the score to at most its weight, the score never exceeds 1, and every
point of it can be traced to a row of the features table. A fact that is missing, or is not a
finite number in its range (strings, booleans, negatives, NaN, shares above 1), is ignored: the
feature then reads "not reported" and contributes nothing.

Features that already raise signals of their own (known-material matches, user reports) weigh less
than the threshold for accounts: the account risk signal adds something only when they combine with
other evidence. A group, though, gets no case from its members' matches otherwise (those signals
attach to the members' accounts), so members who shared known material can make a group a case.
"""

import math
import re
from dataclasses import asdict, dataclass

VERSION = 1
GROUP_RISK = "group_risk"
ACCOUNT_RISK = "account_risk"
TEEN_CONTACT = "teen_contact"
DETECTORS = (GROUP_RISK, ACCOUNT_RISK, TEEN_CONTACT)


@dataclass(frozen=True)
class Rule:
    label: str
    weight: float  # the most this feature alone can add to the score
    full: float  # saturation: at this value the feature has its whole weight
    floor: float = 0.0  # below this the feature adds nothing
    unit: str = ""


# The one table of weights and saturation points (the alert thresholds are settings: RISK_*).
RULES = {
    GROUP_RISK: {
        "matched_members": Rule("Members who shared known material", 0.8, full=3, unit="members"),
        "reports": Rule("Reports against the group or its members (30 days)", 0.5, full=10, unit="reporters"),
        "invite_resets": Rule("Invite-link resets (7 days)", 0.35, full=5, unit="resets"),
        "member_growth": Rule("Member growth (7 days)", 0.35, full=1.0, unit="ratio"),
        "media_share": Rule("Share of posts that are photos or videos", 0.25, full=0.9, floor=0.5, unit="share"),
        "age_mix": Rule("Adults and teens together", 0.35, full=0.25, unit="share"),
        # Trading groups recruit by posting their invite link where strangers look for it, and by
        # "group finder" apps. Many harmless groups are listed too, so neither alone reaches the
        # threshold (0.5): they raise a group that other evidence already points at.
        "public_invite_listings": Rule("Invite link listed in public (sites or apps)", 0.45, full=3,
                                       unit="sources"),
        "referral_joins": Rule("Members who joined through a referring app", 0.35, full=50, unit="joins"),
        # Most groups fill through invite links; only a group filled almost wholly by them says anything.
        "invite_join_share": Rule("Members who joined through an invite link", 0.2, full=0.95, floor=0.6,
                                  unit="share"),
    },
    ACCOUNT_RISK: {
        "matched_items": Rule("Items matching known material", 0.5, full=2, unit="items"),
        "flagged_items": Rule("Items flagged by classifiers or text rules", 0.3, full=3, unit="items"),
        "reports": Rule("Reports against the account or its items (30 days)", 0.4, full=5, unit="reporters"),
        "flagged_groups": Rule("Member of banned or flagged groups", 0.4, full=2, unit="groups"),
        "prior_enforcement": Rule("Earlier enforcement", 0.5, full=2, unit="decisions"),
        "linked_enforced": Rule("Linked accounts banned or with known material", 0.6, full=1, unit="accounts"),
        "linked_accounts": Rule("Accounts on the same device or phone", 0.1, full=5, unit="accounts"),
        # People of any age who blocked or reported the account when it first messaged them: the
        # platform's "block or report this stranger?" prompt. A few come to any busy account, so the
        # features saturate only at numbers no ordinary account reaches in a month.
        "first_contact_blocks": Rule("Blocked on first contact (30 days)", 0.45, full=10, unit="people"),
        "first_contact_reports": Rule("Reported on first contact (30 days)", 0.5, full=5, unit="people"),
        "group_adds_refused": Rule("Group adds refused by the people added (30 days)", 0.3, full=20,
                                   unit="people"),
    },
    TEEN_CONTACT: {
        "teen_non_contacts": Rule("Teens outside its contacts it started chats with (7 days)", 0.6, full=10,
                                  unit="teens"),
        "teen_share": Rule("Teens among the strangers it contacted (7 days)", 0.3, full=0.75, floor=0.25,
                           unit="share"),
        "blocked_by_teens": Rule("Blocked by teens (30 days)", 0.6, full=3, unit="teens"),
        "reported_by_teens": Rule("Reported by teens (30 days)", 0.7, full=2, unit="teens"),
    },
}

# Growth of a tiny group (2 -> 4 members) says little: the growth feature reaches its full
# weight only from this many joins in the window.
GROWTH_MIN_JOINS = 10
# The teen share of a handful of contacts is noise: it counts from this many strangers contacted.
TEEN_SHARE_MIN_CONTACTS = 5
# Age mix needs at least this many members of known age.
AGE_MIX_MIN_KNOWN = 3


@dataclass(frozen=True)
class Feature:
    name: str
    label: str
    value: float | None  # None: the fact was missing or unusable
    display: str
    weight: float
    strength: float  # 0..1 after normalisation
    contribution: float  # weight x strength
    explanation: str

    def as_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class Assessment:
    detector: str
    score: float
    features: list
    summary: dict  # context for the reviewer (member counts...), not scored

    def top(self, n=3):
        return [f for f in sorted(self.features, key=lambda f: -f.contribution) if f.contribution > 0][:n]

    def explanation(self, threshold):
        parts = [f.explanation for f in self.top()]
        return (f"Score {self.score:.2f} (threshold {threshold:.2f}): " + "; ".join(parts) + "."
                if parts else f"Score {self.score:.2f}: nothing stands out.")

    def details(self, threshold):
        return {"features": [f.as_dict() for f in self.features], "score": self.score, "threshold": threshold,
                "version": VERSION, "summary": self.summary}


# No subject has a trillion of anything: a larger fact is a platform bug, not evidence.
MAX_FACT = 1e12


def number(value, *, upper=MAX_FACT):
    """A usable fact: a finite int or float from 0 to `upper`, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and not 0 <= value <= upper:  # also ints too big for a float
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0 or value > upper:
        return None
    return value


def strength(rule, value):
    if value is None or value <= rule.floor:
        return 0.0
    return min(1.0, (value - rule.floor) / (rule.full - rule.floor))


def combine(features):
    remaining = 1.0
    for feature in features:
        remaining *= 1.0 - feature.contribution
    return round(1.0 - remaining, 4)


def _feature(detector, name, value, display, explanation, *, scale=1.0):
    rule = RULES[detector][name]
    s = strength(rule, value) * scale
    return Feature(name=name, label=rule.label, value=value, display=display, weight=rule.weight,
                   strength=round(s, 4), contribution=round(rule.weight * s, 4), explanation=explanation)


def _missing(detector, name, what):
    return _feature(detector, name, None, "—", f"no data on {what[0].lower()}{what[1:]}")


def _count(n):
    return f"{n:,.0f}" if n == int(n) else f"{n:,.1f}"


def _percent(part, whole):
    return f"{100 * part / whole:.0f} %" if whole else "—"


def _plural(n, word):
    return f"{_count(n)} {word}{'' if n == 1 else 's'}"


def _people(n):
    return f"{_count(n)} {'person' if n == 1 else 'people'}"


def _counter(detector, name, facts, key, explain):
    """A plain count fact, explained by `explain(count)`."""
    n = number(facts.get(key))
    if n is None:
        return _missing(detector, name, RULES[detector][name].label)
    return _feature(detector, name, n, _count(n), explain(n))


# Ages ---------------------------------------------------------------------------------------

TEEN, ADULT, UNKNOWN = "teen", "adult", "unknown"
_BAND = re.compile(r"^\s*(\d{1,3})\s*(?:-\s*(\d{1,3})|\+)?\s*$")


def age_group(band):
    """"13-15", "16-17", "under 13" -> teen (any minor); "18+", "18-24", "25-34" -> adult; else unknown."""
    if not isinstance(band, str):
        return UNKNOWN
    text = band.strip().lower()
    if text.startswith(("under", "<")):
        return TEEN
    match = _BAND.match(text)
    if not match:
        return UNKNOWN
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else None
    if low >= 18:
        return ADULT
    if high is not None and high < 18:
        return TEEN
    return UNKNOWN  # e.g. "16+" or "13-19": straddles 18


# Groups -------------------------------------------------------------------------------------

def group_features(facts):
    """Facts: members, matched_members, reporters, reported_members, invite_link_resets_7d,
    member_joins_7d, media_post_share, teen_members, adult_members, invite_listings,
    referral_joins, invite_join_share (all optional)."""
    facts = facts if isinstance(facts, dict) else {}
    g = GROUP_RISK
    members = number(facts.get("members"))
    teens, adults = number(facts.get("teen_members")), number(facts.get("adult_members"))
    features = [
        _matched_members(facts, members),
        _group_reports(facts),
        _counter(g, "invite_resets", facts, "invite_link_resets_7d",
                 lambda n: f"invite link reset {_plural(n, 'time')} in 7 days"),
        _growth(facts, members),
        _media_share(facts),
        _age_mix(teens, adults),
        _listings(facts),
        _referrals(facts),
        _invite_share(facts),
    ]
    summary = {"members": members, "teen_members": teens, "adult_members": adults,
               "unknown_age_members": number(facts.get("unknown_age_members")),
               "matched_members": number(facts.get("matched_members")),
               "invite_sources": [f"{s['source']} ({s['kind']})" for s in invite_listings(facts)]
               + [f"{r['app']} (app referral)" for r in referrals(facts)]}
    return Assessment(g, combine(features), features, summary)


def _matched_members(facts, members):
    n = number(facts.get("matched_members"))
    if n is None:
        return _missing(GROUP_RISK, "matched_members", "Members with known material")
    if members and members >= n:
        text = f"{_count(n)} of {_plural(members, 'member')} ({_percent(n, members)}) shared known material"
    else:
        text = f"{_plural(n, 'member')} shared known material"
    text += ", here or elsewhere"
    return _feature(GROUP_RISK, "matched_members", n, _count(n), text if n else "no member shared known material")


def _group_reports(facts):
    n = number(facts.get("reporters"))
    if n is None:
        return _missing(GROUP_RISK, "reports", "Reports")
    reported = number(facts.get("reported_members")) or 0
    text = f"{_plural(n, 'user')} reported the group or its members in 30 days"
    if reported:
        text += f" ({_plural(reported, 'member')} reported)"
    return _feature(GROUP_RISK, "reports", n, _count(n), text if n else "no reports in 30 days")


def _growth(facts, members):
    joins = number(facts.get("member_joins_7d"))
    if joins is None:
        return _missing(GROUP_RISK, "member_growth", "Member joins")
    before = max((members or 0) - joins, 0)
    ratio = joins / before if before else (1.0 if joins else 0.0)  # every member is new
    scale = min(1.0, joins / GROWTH_MIN_JOINS)
    if before:
        text = f"{_plural(joins, 'member')} joined in 7 days, {100 * ratio:.0f} % growth on {_count(before)}"
    else:
        text = f"{_plural(joins, 'member')} joined in 7 days, all of its members"
    if joins and joins < GROWTH_MIN_JOINS:
        text += f" (counts fully from {GROWTH_MIN_JOINS} joins)"
    return _feature(GROUP_RISK, "member_growth", ratio, f"+{_count(joins)} ({100 * ratio:.0f} %)", text,
                    scale=scale)


def _media_share(facts):
    share = number(facts.get("media_post_share"), upper=1)
    if share is None:
        return _missing(GROUP_RISK, "media_share", "Media share")
    return _feature(GROUP_RISK, "media_share", share, f"{100 * share:.0f} %",
                    f"{100 * share:.0f} % of posts are photos or videos")


def _age_mix(teens, adults):
    if teens is None or adults is None:
        return _missing(GROUP_RISK, "age_mix", "Member ages")
    known = teens + adults
    minority = min(teens, adults) / known if known else 0.0
    display = f"{_plural(teens, 'teen')}, {_plural(adults, 'adult')}"
    if known < AGE_MIX_MIN_KNOWN:
        return _feature(GROUP_RISK, "age_mix", 0.0, display, f"too few members of known age ({_count(known)})")
    if not teens or not adults:
        who = "teens" if teens else "adults"
        return _feature(GROUP_RISK, "age_mix", 0.0, display, f"only {who} among members of known age")
    side = "teens" if teens < adults else "adults"
    return _feature(GROUP_RISK, "age_mix", minority, display,
                    f"{_plural(teens, 'teen')} with {_plural(adults, 'adult')}: {side} are "
                    f"{100 * minority:.0f} % of members of known age")


# Where a group's members came from -------------------------------------------------------------

SOURCE_CHARS = 253
MAX_SOURCES = 50  # entries read from a list: the API takes no more


def source_name(value):
    """A listing's or referral's source as one key: "https://www.Links.example/g/1" -> "links.example",
    "GroupFinder" -> "groupfinder"; None for anything that is not a usable name."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    text = text.split("/", 1)[0].split("?", 1)[0]
    if text.startswith("www."):
        text = text[4:]
    return text[:SOURCE_CHARS] or None


def invite_listings(facts):
    """The usable entries of `invite_listings`, one per source (latest sighting), newest first:
    [{source, kind, seen_at}]. Malformed entries are skipped."""
    entries = facts.get("invite_listings") if isinstance(facts, dict) else None
    found = {}
    for entry in entries[:MAX_SOURCES] if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kind") not in ("site", "app"):
            continue
        name = source_name(entry.get("source"))
        seen = entry.get("seen_at") if isinstance(entry.get("seen_at"), str) else ""
        if name and (name not in found or seen > found[name]["seen_at"]):
            found[name] = {"source": name, "kind": entry["kind"], "seen_at": seen[:32]}
    return sorted(found.values(), key=lambda e: (e["seen_at"], e["source"]), reverse=True)


def referrals(facts):
    """The usable entries of `referral_joins`, summed by app, most joins first: [{app, joins}]."""
    entries = facts.get("referral_joins") if isinstance(facts, dict) else None
    joins = {}
    for entry in entries[:MAX_SOURCES] if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        name, n = source_name(entry.get("app")), number(entry.get("joins"))
        if name and n is not None:
            joins[name] = joins.get(name, 0) + n
    return [{"app": app, "joins": n} for app, n in sorted(joins.items(), key=lambda kv: (-kv[1], kv[0]))]


def _named(names, limit=3):
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _listings(facts):
    if "invite_listings" not in facts or not isinstance(facts.get("invite_listings"), list):
        return _missing(GROUP_RISK, "public_invite_listings", "Public invite-link listings")
    found = invite_listings(facts)
    if not found:
        return _feature(GROUP_RISK, "public_invite_listings", 0.0, "0", "invite link not seen listed in public")
    names = [f"{e['source']} ({e['kind']}{', ' + e['seen_at'][:10] if e['seen_at'] else ''})" for e in found]
    n = float(len(found))
    return _feature(GROUP_RISK, "public_invite_listings", n, _count(n),
                    f"invite link listed in public on {_plural(n, 'source')}: {_named(names)}")


def _referrals(facts):
    if "referral_joins" not in facts or not isinstance(facts.get("referral_joins"), list):
        return _missing(GROUP_RISK, "referral_joins", "Joins through referring apps")
    found = referrals(facts)
    total = float(sum(r["joins"] for r in found))
    if not total:
        return _feature(GROUP_RISK, "referral_joins", 0.0, "0", "no member joined through a referring app")
    names = [f"{r['app']} ({_count(r['joins'])})" for r in found]
    return _feature(GROUP_RISK, "referral_joins", total, _count(total),
                    f"{_plural(total, 'member')} joined through referring apps: {_named(names)}")


def _invite_share(facts):
    share = number(facts.get("invite_join_share"), upper=1)
    if share is None:
        return _missing(GROUP_RISK, "invite_join_share", "Invite-link joins")
    return _feature(GROUP_RISK, "invite_join_share", share, f"{100 * share:.0f} %",
                    f"{100 * share:.0f} % of members joined through an invite link")


# Accounts -----------------------------------------------------------------------------------

def account_features(facts):
    """Facts: items, matched_items, flagged_items, reporters, flagged_groups, groups,
    prior_enforcement, banned, linked_accounts, linked_enforced, first_contact_blocks_30d,
    first_contact_reports_30d, group_adds_refused_30d (all optional)."""
    facts = facts if isinstance(facts, dict) else {}
    a = ACCOUNT_RISK
    items = number(facts.get("items"))

    def of_items(n, what):
        return f"{_count(n)} of {_plural(items, 'item')} {what}" if items and items >= n else \
            f"{_plural(n, 'item')} {what}"

    features = [
        _counter(a, "matched_items", facts, "matched_items", lambda n: of_items(n, "matched known material")),
        _counter(a, "flagged_items", facts, "flagged_items",
                 lambda n: of_items(n, "flagged by classifiers or text rules")),
        _counter(a, "reports", facts, "reporters", lambda n: f"{_plural(n, 'user')} reported it in 30 days"),
        _counter(a, "flagged_groups", facts, "flagged_groups",
                 lambda n: f"member of {_plural(n, 'banned or flagged group')}"
                           + (f" (of {_count(number(facts.get('groups')))})"
                              if number(facts.get("groups")) else "")),
        _counter(a, "prior_enforcement", facts, "prior_enforcement",
                 lambda n: f"{_plural(n, 'earlier decision')} to ban, remove or report"
                           + (" (banned now)" if facts.get("banned") is True else "")),
        _counter(a, "linked_enforced", facts, "linked_enforced",
                 lambda n: f"{_plural(n, 'account')} on the same device or phone banned or with known material"),
        _counter(a, "linked_accounts", facts, "linked_accounts",
                 lambda n: f"{_plural(n, 'other account')} on the same device or phone"),
        _counter(a, "first_contact_blocks", facts, "first_contact_blocks_30d",
                 lambda n: f"blocked by {_people(n)} it first messaged in 30 days"),
        _counter(a, "first_contact_reports", facts, "first_contact_reports_30d",
                 lambda n: f"reported by {_people(n)} it first messaged in 30 days"),
        _counter(a, "group_adds_refused", facts, "group_adds_refused_30d",
                 lambda n: f"{_people(n)} refused being added to a group by it in 30 days"),
    ]
    summary = {"items": items, "groups": number(facts.get("groups")), "banned": facts.get("banned") is True}
    return Assessment(a, combine(features), features, summary)


# Teen contact -------------------------------------------------------------------------------

def teen_contact(facts):
    """Metadata only, no message content. Facts: age_band, teen_non_contacts_initiated_7d,
    non_contacts_initiated_7d, blocked_by_teens_30d, reported_by_teens_30d. Only an adult account
    is scored: teens contacting teens is ordinary, and an unknown age cannot be called adult."""
    facts = facts if isinstance(facts, dict) else {}
    t = TEEN_CONTACT
    group = age_group(facts.get("age_band"))
    summary = {"age_band": facts.get("age_band") if isinstance(facts.get("age_band"), str) else "",
               "age_group": group}
    if group != ADULT:
        why = {TEEN: "the account is a teen's", UNKNOWN: "the account's age is unknown"}[group]
        features = [_feature(t, name, None, "—", f"not scored: {why}") for name in RULES[t]]
        return Assessment(t, 0.0, features, summary)
    teens = number(facts.get("teen_non_contacts_initiated_7d"))
    strangers = number(facts.get("non_contacts_initiated_7d"))
    features = [
        _feature(t, "teen_non_contacts", teens, _count(teens),
                 f"started chats with {_plural(teens, 'teen')} outside its contacts in 7 days")
        if teens is not None else _missing(t, "teen_non_contacts", "Chats started with teens"),
        _teen_share(teens, strangers),
        _counter(t, "blocked_by_teens", facts, "blocked_by_teens_30d",
                 lambda n: f"blocked by {_plural(n, 'teen')} in 30 days"),
        _counter(t, "reported_by_teens", facts, "reported_by_teens_30d",
                 lambda n: f"reported by {_plural(n, 'teen')} in 30 days"),
    ]
    return Assessment(t, combine(features), features, summary)


def _teen_share(teens, strangers):
    if teens is None or strangers is None or strangers < teens:
        return _missing(TEEN_CONTACT, "teen_share", "Strangers contacted")
    share = teens / strangers if strangers else 0.0
    display = f"{_count(teens)} of {_count(strangers)}"
    if strangers < TEEN_SHARE_MIN_CONTACTS:
        return _feature(TEEN_CONTACT, "teen_share", share, display,
                        f"too few strangers contacted to judge ({_count(strangers)})", scale=0.0)
    return _feature(TEEN_CONTACT, "teen_share", share, display,
                    f"{_count(teens)} of the {_plural(strangers, 'stranger')} it contacted "
                    f"({100 * share:.0f} %) are teens")
