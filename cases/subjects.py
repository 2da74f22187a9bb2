"""Subject page queries: an account's or a group's timeline, pivots and network."""

import math
from collections import defaultdict
from datetime import UTC, datetime

from django.db.models import Count, Q
from django.urls import reverse

from cases.models import (
    Case,
    CyberTipReport,
    Decision,
    Enforcement,
    LegalHold,
    LegalRequest,
    SubjectNote,
    SubjectTag,
)
from cases.selectors import live_tags
from detection.models import Account, AccountLink, Group, Item, Membership, Signal, SubjectStatus, UserReport
from detection.retro import item_vectors
from detection.termlists import ACCOUNT_FIELDS, GROUP_FIELDS

PAGE = 50
MEMBERS_PAGE = 50
PIVOT_LIMIT = 500
NETWORK_CAP = 60
NETWORK_FETCH = 300  # rows read per hop at most: a group of a million members is never read whole
ENFORCING = ("ban", "remove", "report")
# What a decision on a group's case may do to one of its members (named by external id).
MEMBER_ACTIONS = ("ban_account", "unban_account")


class BadCursor(ValueError):
    """A `before` cursor that is not `<microseconds>:<kind>:<id>`."""


# ---------------------------------------------------------------- tags

def subject_kind(subject):
    return "account" if isinstance(subject, Account) else "group"


# ---------------------------------------------------------------- timeline

def encode_cursor(when, kind, pk):
    return f"{int(when.timestamp() * 1_000_000)}:{kind}:{pk}"


def parse_cursor(value):
    """(aware datetime, kind, id) from a `before` cursor, or BadCursor."""
    if not value:
        return None
    if len(value) > 80:
        raise BadCursor("cursor too long")
    parts = value.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit() or parts[1] not in KINDS:
        raise BadCursor("cursor is not <time>:<kind>:<id>")
    try:
        when = datetime.fromtimestamp(int(parts[0]) / 1_000_000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise BadCursor("cursor time out of range") from None
    micros = int(parts[0]) % 1_000_000
    return when.replace(microsecond=micros), parts[1], int(parts[2])


def _before(queryset, kind, field, cursor):
    """Rows strictly after the cursor in the order (time desc, kind desc, id desc)."""
    if cursor is None:
        return queryset
    when, ckind, cid = cursor
    if kind < ckind:
        return queryset.filter(**{f"{field}__lte": when})
    if kind > ckind:
        return queryset.filter(**{f"{field}__lt": when})
    return queryset.filter(Q(**{f"{field}__lt": when}) | Q(**{field: when, "pk__lt": cid}))


def _timeline_sources(subject, user_flags):
    """[(kind, queryset, time field)] of everything about `subject` the user may see."""
    kind = subject_kind(subject)
    senior = user_flags["senior"]

    def visible_cases(prefix):
        """Cases of senior-only queues, and what follows from them, are for seniors."""
        return Q() if senior else Q(**{f"{prefix}queue__senior_only": False})

    sources = [
        ("item", Item.objects.filter(**{kind: subject.pk}), "created_at"),
        ("signal", Signal.objects.filter(**{kind: subject.pk}) if senior else Signal.objects.filter(
            Q(case__isnull=True) | Q(case__queue__senior_only=False), **{kind: subject.pk}), "created_at"),
        ("case", Case.objects.filter(**{kind: subject.pk}).filter(visible_cases("")), "created_at"),
        ("decision", Decision.objects.filter(**{f"case__{kind}": subject.pk}).filter(visible_cases("case__")),
         "created_at"),
        ("enforcement", Enforcement.objects.filter(**{f"decision__case__{kind}": subject.pk}).filter(
            visible_cases("decision__case__")), "created_at"),
        ("note", SubjectNote.objects.filter(**{kind: subject.pk}), "created_at"),
        ("tag", SubjectTag.objects.filter(**{kind: subject.pk}), "set_at"),
        ("legal", LegalRequest.objects.filter(**{f"{kind}s": subject.pk}), "created_at"),
        ("hold", LegalHold.objects.filter(**{f"item__{kind}": subject.pk}), "placed_at"),
        ("report_against", UserReport.objects.filter(Q(**{kind: subject.pk}) | Q(**{f"item__{kind}": subject.pk})),
         "created_at"),
    ]
    if kind == "account":
        sources.append(("report_by", UserReport.objects.filter(reporter=subject.external_id), "created_at"))
        # A member banned by a decision on one of its groups' cases: found through those cases (an index
        # path), never by scanning every enforcement for the account's id.
        sources.append(("enforcement", Enforcement.objects.filter(
            decision__case__group__in=Membership.objects.filter(account=subject).values("group"),
            target=subject.external_id, action__in=MEMBER_ACTIONS).filter(
            visible_cases("decision__case__")), "created_at"))
    if user_flags["reveal"] and user_flags["review"]:  # CyberTipline reports are need-to-know
        sources.append(("cybertip", CyberTipReport.objects.filter(**{f"case__{kind}": subject.pk}).filter(
            visible_cases("case__")), "created_at"))
    return sources


RELATED = {
    "item": ("account", "group"),
    "signal": ("item", "case"),
    "case": ("queue", "assigned_to"),
    "decision": ("case", "reason", "policy", "decided_by", "rule_version__rule"),
    "enforcement": ("decision__case", "platform"),
    "note": ("author", "case"),
    "tag": ("set_by", "removed_by"),
    "legal": ("agency",),
    "hold": ("item", "placed_by", "lifted_by"),
    "report_against": ("item",),
    "report_by": ("account", "group", "item"),
    "cybertip": ("case", "decision"),
}
KINDS = sorted(RELATED)


def timeline(subject, user_flags, before=None, page=PAGE):
    """One page of everything about `subject`, newest first, and the cursor of the next page (or None).

    `user_flags` is {"review", "senior", "reveal"}: what the viewer may see. One query per kind of row,
    each reading at most `page + 1` rows by an index on its time, however many rows the subject has."""
    cursor = parse_cursor(before) if isinstance(before, str) else before
    rows = []
    for kind, source, field in _timeline_sources(subject, user_flags):
        queryset = _before(source.select_related(*RELATED[kind]), kind, field, cursor)
        for obj in queryset.order_by(f"-{field}", "-pk")[:page + 1]:
            rows.append({"kind": kind, "at": getattr(obj, field), "obj": obj})
    rows.sort(key=lambda r: (r["at"], r["kind"], r["obj"].pk), reverse=True)
    more = len(rows) > page
    rows = rows[:page]
    next_cursor = encode_cursor(rows[-1]["at"], rows[-1]["kind"], rows[-1]["obj"].pk) if more and rows else None
    return rows, next_cursor


# ---------------------------------------------------------------- profile

def _surface_spans(subject):
    """{field: spans} from the newest text signal that saw each field as it reads now."""
    fields = ACCOUNT_FIELDS if subject_kind(subject) == "account" else GROUP_FIELDS
    spans = {}
    current = {name: getattr(subject, name) or "" for name, _ in fields}
    for signal in Signal.objects.filter(**{subject_kind(subject): subject.pk}, item__isnull=True,
                                        kind="text").order_by("-created_at", "-pk")[:20]:
        for entry in (signal.details or {}).get("fields", ()):
            if not isinstance(entry, dict):
                continue
            name = entry.get("field")
            if name in current and name not in spans and entry.get("text") == current[name]:
                spans[name] = entry.get("spans") or []
    return [{"field": name, "label": label, "text": current[name], "spans": spans.get(name, [])}
            for name, label in fields if current[name]]


def _open_cases(account_ids=(), group_ids=()):
    """{("account"|"group", pk): open case} in one query."""
    found = {}
    if not account_ids and not group_ids:
        return found
    for case in Case.objects.filter(Q(account__in=list(account_ids)) | Q(group__in=list(group_ids)),
                                    closed_at__isnull=True).select_related("queue"):
        found[("account", case.account_id) if case.account_id else ("group", case.group_id)] = case
    return found


def linked_accounts(account, limit=50):
    """Other accounts that share a phone or device hash with `account`, with what they share."""
    links = list(account.links.all()[:50])
    if not links:
        return []
    shared = Q()
    for link in links:
        shared |= Q(kind=link.kind, value=link.value)
    found = {}
    for row in (AccountLink.objects.filter(shared).exclude(account=account).select_related("account")
                .order_by("account__external_id")[:limit * 4]):
        entry = found.setdefault(row.account_id, {"account": row.account, "shared": []})
        entry["shared"].append(row.get_kind_display())
    return list(found.values())[:limit]


# Groups larger than this are left out of the co-member ranking: sharing a huge public group says little,
# and ranking its members would read every one of them on each page view.
CO_MEMBER_GROUP_MAX = 5000


def co_members(account, limit=50):
    """Accounts in `account`'s groups (those up to CO_MEMBER_GROUP_MAX members), ranked by how many groups
    they share with it; each carries `shared`. The ranking reads memberships only, then `limit` accounts."""
    groups = list(Membership.objects.filter(account=account).values_list("group", flat=True)[:500])
    sizes = dict(Membership.objects.filter(group__in=groups).order_by().values("group")
                 .annotate(n=Count("id")).values_list("group", "n"))
    ranked = [g for g in groups if sizes.get(g, 0) <= CO_MEMBER_GROUP_MAX]
    top = list(Membership.objects.filter(group__in=ranked).exclude(account=account).order_by()
               .values("account").annotate(shared=Count("group")).order_by("-shared", "account")[:limit])
    accounts = Account.objects.in_bulk([row["account"] for row in top])
    found = []
    for row in top:
        subject = accounts[row["account"]]
        subject.shared = row["shared"]
        found.append(subject)
    return sorted(found, key=lambda a: (-a.shared, a.external_id))


def members_page(group, after=0, page=MEMBERS_PAGE):
    """A page of a group's members (by account id) with their status, and the id to continue after."""
    rows = list(Membership.objects.filter(group=group, account_id__gt=after).select_related("account")
                .order_by("account_id")[:page + 1])
    more = len(rows) > page
    rows = rows[:page]
    return rows, (rows[-1].account_id if more else None)


def profile(subject, members_after=0):
    """The subject's text surfaces (with what the text detectors marked), facts, status and relations."""
    kind = subject_kind(subject)
    surfaces = _surface_spans(subject)
    data = {"kind": kind, "subject": subject, "surfaces": surfaces, "marked_any": any(s["spans"] for s in surfaces),
            "facts": subject.facts or {},
            "tags": live_tags(**{f"{kind}s": [subject]}).get((kind, subject.pk), [])}
    if kind == "account":
        data["groups"] = list(Group.objects.filter(membership__account=subject).order_by("external_id")[:100])
        data["linked"] = linked_accounts(subject)
        data["items_count"] = Item.objects.filter(account=subject).count()
    else:
        data["members"], data["members_next"] = members_page(subject, members_after)
        data["members_total"] = Membership.objects.filter(group=subject).count()
        data["items_count"] = Item.objects.filter(group=subject).count()
    data["open_case"] = Case.objects.filter(**{kind: subject.pk}, closed_at__isnull=True).select_related(
        "queue").first()
    return data


# ---------------------------------------------------------------- pivots

def vectors_of(item):
    """The item's stored PDQ hashes (every orientation and usable frame), joined as 32-byte strings."""
    return item_vectors(item.pdq, item.pdq_quality, item.pdq_orientations, item.frame_hashes)


def _near_pairs(near):
    """[(item id, distance)] from `cases.search.near_items` (its hits) or any list of such pairs or dicts."""
    pairs = []
    for row in getattr(near, "hits", near) or ():
        if isinstance(row, (tuple, list)) and len(row) >= 2:
            pk, distance = row[0], row[1]
        elif isinstance(row, dict):
            pk = row.get("item_id", row.get("id", row.get("item")))
            distance = row.get("distance")
        else:
            pk = getattr(row, "item_id", getattr(row, "pk", None))
            distance = getattr(row, "distance", None)
        pk = getattr(pk, "pk", pk)
        try:
            pairs.append((int(pk), int(distance)))
        except (TypeError, ValueError):
            continue
    return pairs


def item_pivot(item, near=None, limit=PIVOT_LIMIT):
    """Every account and group that shared the same media (MD5/SHA-256) or similar media (`near`: PDQ
    neighbours as found by cases.search.near_items), with the closest distance, how many items, status
    and open case. Returns {"accounts": [...], "groups": [...], "items": {item id: distance}}."""
    distances, exact = {}, set()
    same = Q()
    if item.md5:
        same |= Q(md5=item.md5)
    if item.sha256:
        same |= Q(sha256=item.sha256)
    if same:
        for pk in Item.objects.filter(same).exclude(pk=item.pk).values_list("pk", flat=True)[:limit]:
            distances[pk] = 0
            exact.add(pk)
    for pk, distance in _near_pairs(near)[:limit]:
        if pk != item.pk and distances.get(pk, 999) > distance:
            distances[pk] = distance
    hits = list(Item.objects.filter(pk__in=list(distances)).select_related("account", "group")
                .only("pk", "account", "group", "kind", "hash_only", "account__external_id", "account__status",
                      "account__screen_name", "group__external_id", "group__status", "group__name"))
    accounts, groups = {}, {}
    for hit in hits:
        d = distances[hit.pk]
        for table, subject in ((accounts, hit.account), (groups, hit.group)):
            if subject is None:
                continue
            entry = table.setdefault(subject.pk, {"subject": subject, "distance": d, "items": 0, "exact": False,
                                                  "item_ids": []})
            entry["distance"] = min(entry["distance"], d)
            entry["items"] += 1
            entry["item_ids"].append(hit.pk)
            entry["exact"] = entry["exact"] or hit.pk in exact
    cases = _open_cases(accounts, groups)
    for kind, table in (("account", accounts), ("group", groups)):
        for pk, entry in table.items():
            entry["open_case"] = cases.get((kind, pk))
    tags = live_tags(accounts, groups)
    for kind, table in (("account", accounts), ("group", groups)):
        for pk, entry in table.items():
            entry["tags"] = tags.get((kind, pk), [])

    def order(entries):
        return sorted(entries, key=lambda e: (not e["exact"], e["distance"], -e["items"], e["subject"].external_id))

    return {"accounts": order(accounts.values()), "groups": order(groups.values()), "items": distances,
            "exact_items": exact}


# ---------------------------------------------------------------- network

def _actioned(account_ids, group_ids):
    """Subjects with a standing enforcing decision on one of their cases."""
    rows = (Decision.objects.filter(Q(case__account__in=list(account_ids)) | Q(case__group__in=list(group_ids)),
                                    action__in=ENFORCING, undone_at__isnull=True, rolled_back_at__isnull=True)
            .exclude(approval__in=["pending", "rejected"]).order_by().values_list("case__account", "case__group")
            .distinct())
    found = set()
    for account_id, group_id in rows:
        found.add(("account", account_id) if account_id else ("group", group_id))
    return found


def NODE_FIELDS(kind):  # noqa: N802 - a constant per kind
    """What a node needs of a membership's other side (not its facts, bio or description)."""
    name = "screen_name" if kind == "account" else "name"
    return ("account_id", "group_id", f"{kind}__external_id", f"{kind}__{name}", f"{kind}__status")


def network(subject, hops=1, cap=NETWORK_CAP):
    """Nodes and edges around `subject`: accounts and the groups they are in, and linked accounts.

    At most `cap` nodes, nearer first; `left_out` says how many more the hops reached. Bounded: two or
    three queries per hop, each reading at most NETWORK_FETCH rows."""
    center = (subject_kind(subject), subject.pk)
    depth = {center: 0}
    objects = {center: subject}
    edges = set()
    order = [center]
    frontier = [center]
    reached_more = False
    for hop in range(1, hops + 1):
        accounts = [pk for kind, pk in frontier if kind == "account"]
        groups = [pk for kind, pk in frontier if kind == "group"]
        found = []
        if accounts:
            rows = list(Membership.objects.filter(account__in=accounts).select_related("group")
                        .only(*NODE_FIELDS("group")).order_by("group__external_id")[:NETWORK_FETCH])
            reached_more |= len(rows) == NETWORK_FETCH
            found += [(("account", r.account_id), ("group", r.group_id), r.group) for r in rows]
            mine = defaultdict(set)
            for link in AccountLink.objects.filter(account__in=accounts)[:200]:
                mine[(link.kind, link.value)].add(link.account_id)
            if mine:
                shared = Q()
                for kind, value in mine:
                    shared |= Q(kind=kind, value=value)
                rows = list(AccountLink.objects.filter(shared).exclude(account__in=accounts)
                            .select_related("account").order_by("account__external_id")[:NETWORK_FETCH])
                for r in rows:
                    for source in sorted(mine[(r.kind, r.value)]):
                        found.append((("account", source), ("account", r.account_id), r.account))
        if groups:
            rows = list(Membership.objects.filter(group__in=groups).select_related("account")
                        .only(*NODE_FIELDS("account")).order_by("account__external_id")[:NETWORK_FETCH])
            reached_more |= len(rows) == NETWORK_FETCH
            found += [(("group", r.group_id), ("account", r.account_id), r.account) for r in rows]
        frontier = []
        for source, target, obj in found:
            if target not in depth:
                depth[target] = hop
                objects[target] = obj
                order.append(target)
                frontier.append(target)
            if source != target:
                edges.add(tuple(sorted((source, target))))
        # Only what can still be drawn is expanded further: a hop never reads beyond the cap's own nodes.
        drawn = set(order[:cap])
        if any(key not in drawn for key in frontier):
            reached_more = True
        frontier = [key for key in frontier if key in drawn]
    shown = order[:cap]
    keep = set(shown)
    account_ids = [pk for kind, pk in shown if kind == "account"]
    group_ids = [pk for kind, pk in shown if kind == "group"]
    actioned = _actioned(account_ids, group_ids)
    nodes = []
    for key in shown:
        obj = objects[key]
        nodes.append({
            "key": key, "kind": key[0], "pk": key[1], "depth": depth[key], "obj": obj,
            "label": _label(obj), "banned": obj.status == SubjectStatus.BANNED, "actioned": key in actioned,
            "url": reverse(f"cases:{key[0]}", args=[key[1]]),
        })
    return {
        "nodes": nodes, "edges": sorted(e for e in edges if e[0] in keep and e[1] in keep),
        "left_out": len(order) - len(shown), "more": reached_more, "hops": hops,
    }


def xml_safe(text):
    """Text that XML can hold: the platform's names may carry control characters XML 1.0 forbids."""
    return "".join(c for c in text if c in "\t\n" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd")
                   or c >= "\U00010000")


def _label(obj):
    name = getattr(obj, "screen_name", "") or getattr(obj, "name", "")
    return xml_safe(f"{obj.external_id} ({name})" if name else obj.external_id)


def radial_layout(nodes, size=640):
    """{key: (x, y)}: the subject in the middle, each hop on its own ring, in a fixed order (deterministic:
    the same data always draws the same picture)."""
    middle = size / 2
    rings = defaultdict(list)
    for node in nodes:
        rings[node["depth"]].append(node)
    places = {}
    radius_step = (size / 2 - 60) / max(1, max(rings) if rings else 1)
    for depth, ring in sorted(rings.items()):
        ring.sort(key=lambda n: (n["kind"], n["obj"].external_id, n["pk"]))
        if depth == 0:
            for node in ring:
                places[node["key"]] = (round(middle), round(middle))
            continue
        for i, node in enumerate(ring):
            angle = 2 * math.pi * i / len(ring) - math.pi / 2 + (0.3 if depth % 2 == 0 else 0)
            places[node["key"]] = (round(middle + depth * radius_step * math.cos(angle)),
                                   round(middle + depth * radius_step * math.sin(angle)))
    return places
