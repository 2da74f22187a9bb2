"""Moving models out of the cases app must keep every row, id, link and content type.

Account, AccountLink, Group, Membership, Item, Signal and UserReport moved from cases to detection,
AuditEvent to the audit app (reviewconsole.audit); the tables keep their cases_* names and the
migrations are state only, plus a RunPython that moves the content types. This test takes the test
database back to the old head (cases 0020, detection 0004, no audit app), writes data there with the
historical models, as a deployment at the old head would hold it, migrates forward to the leaves and
checks with the current models that everything is still there and still linked.
"""

import datetime as dt

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from cases.models import Case, Decision, IntegrityAlert, LegalHold, ReviewQueue, SubjectNote
from detection.models import Account, AccountLink, Group, Item, Membership, Signal, UserReport, held_now
from reviewconsole.audit.models import AuditEvent

# Every app at the state it had before the move. cases 0020 and detection 0004 alone would do (their
# descendants include both audit migrations); the audit app is named so that it is plainly unapplied.
OLD_HEAD = [("cases", "0020_account_links"), ("detection", "0004_bank_labels_exchange"), ("audit", None)]
MOVED = {"detection": ["account", "accountlink", "group", "membership", "item", "signal", "userreport"],
         "audit": ["auditevent"]}
# The move itself; later migrations (with schema changes of their own) are run after it.
MOVE_HEAD = [("cases", "0022_subjects_items_signals_audit_moved_out"),
             ("detection", "0005_subjects_items_signals_from_cases"), ("audit", "0002_auditevent_links")]
NEW_MIGRATIONS = {("cases", "0021_subjects_move_to_detection"),
                  ("cases", "0022_subjects_items_signals_audit_moved_out"),
                  ("detection", "0005_subjects_items_signals_from_cases"),
                  ("audit", "0001_auditevent_from_cases"), ("audit", "0002_auditevent_links")}

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _executor():
    return MigrationExecutor(connection)


def _migrate_to_leaves():
    executor = _executor()
    leaves = executor.loader.graph.leaf_nodes()
    if executor.migration_plan(leaves):
        executor.migrate(leaves)
    ContentType.objects.clear_cache()


def _schema_sql(executor, plan):
    """SQL each migration of the plan would run, one migration at a time as sqlmigrate does (the loader
    carries a single state through a plan, which is wrong for more than one backwards step); comments
    dropped, so state-only migrations give nothing."""
    return [(migration.app_label, migration.name, sql) for migration, backwards in plan
            for sql in executor.loader.collect_sql([(migration, backwards)]) if not sql.lstrip().startswith("--")]


def _applied_state_apps(executor):
    """Historical models exactly as the applied migrations leave them (every app, not only cases)."""
    executor.loader.build_graph()
    return executor.loader.project_state(list(executor.loader.applied_migrations), at_end=True).apps


def _content_types_as_at_old_head(apps):
    """The test database was built at the leaves, so its content types already carry the new labels and
    the backwards RunPython is a no-op. Give them back the labels a database at the old head has
    (cases.item and so on, nothing under detection or audit), keeping their ids."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    for new_label, models in MOVED.items():
        for model in models:
            if ContentType.objects.filter(app_label="cases", model=model).exists():
                ContentType.objects.filter(app_label=new_label, model=model).delete()
            elif not ContentType.objects.filter(app_label=new_label, model=model).update(app_label="cases"):
                ContentType.objects.create(app_label="cases", model=model)


def _rows(model, pks):
    return list(model.objects.filter(pk__in=pks).order_by("pk").values())


def _old_head_data(apps):
    """Write data with the historical models at the old head; return the ids and a snapshot of the rows."""
    get = apps.get_model
    User = get("auth", "User")
    Permission_ = get("auth", "Permission")
    ContentType_ = get("contenttypes", "ContentType")
    LogEntry_ = get("admin", "LogEntry")

    reviewer = User.objects.create(username="mig-reviewer", password="!", is_active=True)
    item_ct = ContentType_.objects.get(app_label="cases", model="item")
    audit_ct = ContentType_.objects.get(app_label="cases", model="auditevent")
    reviewer.user_permissions.add(Permission_.objects.get(content_type=item_ct, codename="change_item"))

    account = get("cases", "Account").objects.create(
        external_id="mig-acct-1", screen_name="mig_one", display_name="Mig One", bio="bio text",
        email="one@example.org", phone="+15550100", age_band="16-17", registered_at=T0,
        facts={"messages_to_minors": 3}, status="banned", banned_at=T0 + dt.timedelta(days=2),
        analysed_at=T0 + dt.timedelta(hours=1))
    other = get("cases", "Account").objects.create(external_id="mig-acct-2", screen_name="mig_two")
    group = get("cases", "Group").objects.create(
        external_id="mig-group-1", name="Mig group", description="a group", member_count=2, facts={"public": True})
    membership = get("cases", "Membership").objects.create(account=account, group=group, role="admin",
                                                           joined_at=T0)
    get("cases", "Membership").objects.create(account=other, group=group, role="member")
    link = get("cases", "AccountLink").objects.create(account=account, kind="device", value="d" * 64)
    item = get("cases", "Item").objects.create(
        account=account, group=group, kind="image", external_id="mig-item-1", original_name="a.jpg",
        declared_type="image/jpeg", size=12345, storage_path="ab/cd/abcd.jpg", uploaded_at=T0, ip="203.0.113.7",
        md5="0" * 32, sha256="1" * 64, detected_format="JPEG", width=640, height=480, pdq="f" * 64,
        pdq_quality=90, phash="a" * 16, dhash="b" * 16, status="scanned", scan_attempts=1, enqueued_at=T0,
        scanned_at=T0 + dt.timedelta(minutes=1), frame_hashes=[{"t": 0, "pdq": "e" * 64, "quality": 80}])
    queue = get("cases", "ReviewQueue").objects.create(slug="mig-queue", name="Migration queue", sla_minutes=90)
    case = get("cases", "Case").objects.create(
        account=account, group=group, queue=queue, status="claimed", priority=70, base_priority=60,
        summary="hash match on mig-item-1", assigned_to=reviewer, version=3, created_at=T0)
    signal = get("cases", "Signal").objects.create(
        account=account, group=group, item=item, case=case, kind="hash_match", detector="pdq", label="known",
        score=0.97, severity=90, explanation="distance 12", details={"distance": 12, "bank": "mig"},
        dedupe_key="mig:pdq:item-1", triaged_at=T0 + dt.timedelta(minutes=2))
    report = get("cases", "UserReport").objects.create(
        account=account, group=group, item=item, reporter="reporter-9", reason="csam", comment="please look",
        external_id="mig-report-1")
    reason = get("cases", "ReasonCode").objects.create(code="mig-reason", label="Migration reason",
                                                       actions=["ban"])
    decision = get("cases", "Decision").objects.create(
        case=case, case_version=3, action="ban", reason=reason, note="clear match", decided_by=reviewer,
        options={"members": [other.pk]})
    hold = get("cases", "LegalHold").objects.create(
        item=item, reason="manual", note="kept for the test", placed_by=reviewer, placed_at=T0,
        until=T0 + dt.timedelta(days=365 * 10))
    alert = get("cases", "IntegrityAlert").objects.create(item=item, problem="sha256 mismatch", found_sha256="2" * 64)
    note = get("cases", "SubjectNote").objects.create(account=account, group=group, case=case, author=reviewer,
                                                      text="seen before")
    event = get("cases", "AuditEvent").objects.create(
        actor=reviewer, actor_label="mig-reviewer", action="case.opened", case=case, item=item,
        object_type="case", object_id=str(case.pk), details={"why": "test"}, ip="198.51.100.4", created_at=T0)
    log = LogEntry_.objects.create(
        user=reviewer, content_type=item_ct, object_id=str(item.pk), object_repr=f"item {item.pk}",
        action_flag=2, change_message="[]", action_time=T0)

    ids = {"user": reviewer.pk, "account": account.pk, "other": other.pk, "group": group.pk,
           "membership": membership.pk, "link": link.pk, "item": item.pk, "queue": queue.pk, "case": case.pk,
           "signal": signal.pk, "report": report.pk, "decision": decision.pk, "hold": hold.pk, "alert": alert.pk,
           "note": note.pk, "event": event.pk, "log": log.pk, "item_ct": item_ct.pk, "audit_ct": audit_ct.pk,
           "item_perms": set(Permission_.objects.filter(content_type=item_ct).values_list("pk", flat=True)),
           "audit_perms": set(Permission_.objects.filter(content_type=audit_ct).values_list("pk", flat=True)),
           "cts": {model: ContentType_.objects.get(app_label="cases", model=model).pk
                   for models in MOVED.values() for model in models}}
    tables = {"account": [account.pk, other.pk], "group": [group.pk],
              "membership": list(get("cases", "Membership").objects.values_list("pk", flat=True)),
              "accountlink": [link.pk], "item": [item.pk], "signal": [signal.pk], "userreport": [report.pk],
              "auditevent": [event.pk], "case": [case.pk], "decision": [decision.pk], "legalhold": [hold.pk],
              "integrityalert": [alert.pk], "subjectnote": [note.pk]}
    snapshot = {name: _rows(get("cases", name), pks) for name, pks in tables.items()}
    snapshot["logentry"] = _rows(LogEntry_, [log.pk])
    return ids, tables, snapshot


CURRENT = {"account": Account, "group": Group, "membership": Membership, "accountlink": AccountLink, "item": Item,
           "signal": Signal, "userreport": UserReport, "auditevent": AuditEvent, "case": Case, "decision": Decision,
           "legalhold": LegalHold, "integrityalert": IntegrityAlert, "subjectnote": SubjectNote}


def test_moving_models_out_of_cases_keeps_rows_ids_links_and_content_types():
    try:
        executor = _executor()
        leaves = executor.loader.graph.leaf_nodes()
        assert not executor.migration_plan(leaves), "the test database should start at the leaves"

        # Back to the old head, past the migrations that came after the move; every step of the move
        # itself is state only: no SQL but comments.
        executor.migrate(MOVE_HEAD)
        executor = _executor()
        back = executor.migration_plan(OLD_HEAD)
        assert {(m.app_label, m.name) for m, backwards in back if backwards} == NEW_MIGRATIONS
        assert all(backwards for _, backwards in back)
        assert _schema_sql(executor, back) == []
        executor.migrate(OLD_HEAD)

        executor = _executor()
        applied = set(executor.loader.applied_migrations)
        assert ("cases", "0020_account_links") in applied
        assert ("detection", "0004_bank_labels_exchange") in applied
        assert not applied & NEW_MIGRATIONS
        old_apps = _applied_state_apps(executor)
        assert "audit" not in {m._meta.app_label for m in old_apps.get_models()}
        assert old_apps.get_model("cases", "Item")._meta.db_table == "cases_item"

        _content_types_as_at_old_head(old_apps)
        ids, tables, snapshot = _old_head_data(old_apps)

        # Forward to the leaves, as `migrate` does, then what `migrate` does after: post_migrate
        # (content types and permissions for models that lack them, the role groups).
        executor = _executor()
        forward = executor.migration_plan(MOVE_HEAD)
        assert {(m.app_label, m.name) for m, _ in forward} == NEW_MIGRATIONS
        assert _schema_sql(executor, forward) == []
        executor.migrate(MOVE_HEAD)
        executor = _executor()
        executor.migrate(leaves)
        emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)
        ContentType.objects.clear_cache()

        executor = _executor()  # reloaded: reads the recorded migrations again
        assert not executor.migration_plan(executor.loader.graph.leaf_nodes())
        assert NEW_MIGRATIONS <= set(executor.loader.applied_migrations)

        # Every row, with the same ids and field values, read through the current models.
        for name, pks in tables.items():
            # Columns added by later migrations are left out: the rows keep every value they had.
            rows = _rows(CURRENT[name], pks)
            kept = [{key: row[key] for key in old} for row, old in zip(rows, snapshot[name], strict=True)]
            assert kept == snapshot[name], name
        assert _rows(LogEntry, [ids["log"]]) == snapshot["logentry"]

        # The links, followed through the current models.
        account = Account.objects.get(pk=ids["account"])
        group = Group.objects.get(pk=ids["group"])
        item = Item.objects.get(pk=ids["item"])
        case = Case.objects.get(pk=ids["case"])
        signal = Signal.objects.get(pk=ids["signal"])
        event = AuditEvent.objects.get(pk=ids["event"])
        hold = LegalHold.objects.get(pk=ids["hold"])
        assert account.external_id == "mig-acct-1" and account.status == "banned"
        assert account.facts == {"messages_to_minors": 3}
        assert case.account == account and case.group == group and case.queue == ReviewQueue.objects.get(
            pk=ids["queue"])
        assert case.assigned_to_id == ids["user"]
        assert list(case.signals.all()) == [signal]
        assert signal.case == case and signal.item == item and signal.account == account and signal.group == group
        assert signal.details == {"distance": 12, "bank": "mig"} and signal.score == pytest.approx(0.97)
        assert list(item.signals.all()) == [signal]
        assert item.account == account and item.group == group
        assert item.frame_hashes == [{"t": 0, "pdq": "e" * 64, "quality": 80}]
        assert list(item.holds.all()) == [hold] and hold.item == item and hold.placed_by_id == ids["user"]
        assert Item.objects.filter(held_now(), pk=item.pk).exists()
        assert list(item.integrity_alerts.all()) == [IntegrityAlert.objects.get(pk=ids["alert"])]
        assert list(item.reports.all()) == [UserReport.objects.get(pk=ids["report"])]
        assert UserReport.objects.get(pk=ids["report"]).account == account
        assert event.case == case and event.item == item and event.actor_id == ids["user"]
        assert list(case.audit_events.all()) == [event] and list(item.audit_events.all()) == [event]
        assert event.action == "case.opened" and event.details == {"why": "test"}
        assert Decision.objects.get(pk=ids["decision"]).case == case
        assert list(case.decisions.all()) == [Decision.objects.get(pk=ids["decision"])]
        assert SubjectNote.objects.get(pk=ids["note"]).account == account
        assert sorted(group.members.values_list("external_id", flat=True)) == ["mig-acct-1", "mig-acct-2"]
        assert list(account.groups.all()) == [group]
        assert Membership.objects.get(pk=ids["membership"]).role == "admin"
        assert list(account.links.values_list("kind", "value")) == [("device", "d" * 64)]

        # Content types moved with their ids: admin log entries and permissions still point at the rows.
        assert ContentType.objects.get(app_label="detection", model="item").pk == ids["item_ct"]
        assert ContentType.objects.get(app_label="audit", model="auditevent").pk == ids["audit_ct"]
        for label, models in MOVED.items():
            for model in models:
                assert ContentType.objects.get(app_label=label, model=model).pk == ids["cts"][model], model
                assert not ContentType.objects.filter(app_label="cases", model=model).exists(), model
        assert ContentType.objects.get_for_model(Item).pk == ids["item_ct"]
        assert ContentType.objects.get_for_model(AuditEvent).pk == ids["audit_ct"]
        assert set(Permission.objects.filter(content_type_id=ids["item_ct"]).values_list("pk", flat=True)) == \
            ids["item_perms"]
        assert set(Permission.objects.filter(content_type_id=ids["audit_ct"]).values_list("pk", flat=True)) == \
            ids["audit_perms"]
        reviewer = get_user_model().objects.get(pk=ids["user"])
        assert reviewer.user_permissions.filter(content_type__app_label="detection", codename="change_item").exists()
        log = LogEntry.objects.get(pk=ids["log"])
        assert log.content_type_id == ids["item_ct"] and log.get_edited_object() == item

        # The tables still take new rows through the current models, with fresh ids.
        new_item = Item.objects.create(account=account, md5="3" * 32, sha256="4" * 64)
        assert new_item.pk > ids["item"]
        new_event = AuditEvent.objects.create(actor_label="system", action="item.received", item=new_item)
        assert new_event.pk > ids["event"]
    finally:
        _migrate_to_leaves()
