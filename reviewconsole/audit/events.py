"""Every kind of audit row, by name. An action records one of these, never a free string."""

from django.db import models


class Event(models.TextChoices):
    ACCOUNT_ENROLMENT_CODE_ISSUED = "account.enrolment_code_issued"
    ACCOUNT_ENROLMENT_CODE_REFUSED = "account.enrolment_code_refused"
    ACCOUNT_ENROLMENT_CODE_USED = "account.enrolment_code_used"
    ACCOUNT_TWO_FACTOR_ENROLLED = "account.two_factor_enrolled"
    ACCOUNT_TWO_FACTOR_FAILED = "account.two_factor_failed"
    ACCOUNT_TWO_FACTOR_VERIFIED = "account.two_factor_verified"
    ACCOUNT_VIEWING_PREFERENCES = "account.viewing_preferences"

    APPEAL_CLAIMED = "appeal.claimed"
    APPEAL_OVERTURNED = "appeal.overturned"
    APPEAL_RECEIVED = "appeal.received"
    APPEAL_RELEASED = "appeal.released"
    APPEAL_REPORT_KEPT = "appeal.report_kept"
    APPEAL_UPHELD = "appeal.upheld"

    BANK_CHANGED = "bank.changed"
    BANK_CREATED = "bank.created"
    BANK_DELETED = "bank.deleted"
    BANK_ENTRIES_ADDED = "bank.entries_added"
    BANK_ENTRY_ADDED = "bank.entry_added"
    BANK_ENTRY_CHANGED = "bank.entry_changed"
    BANK_ENTRY_DECONFIRMED = "bank.entry_deconfirmed"
    BANK_ENTRY_QUARANTINED = "bank.entry_quarantined"
    BANK_ENTRY_RECONFIRMED = "bank.entry_reconfirmed"
    BANK_ENTRY_REMOVED = "bank.entry_removed"
    BANK_EXPORTED = "bank.exported"
    BANK_FEEDBACK_EXPORTED = "bank.feedback_exported"
    BANK_FEEDBACK_SENT = "bank.feedback_sent"
    BANK_IMPORT_FAILED = "bank.import_failed"
    BANK_IMPORT_QUEUED = "bank.import_queued"
    BANK_IMPORTED = "bank.imported"

    BREAKER_RESUMED = "breaker.resumed"
    BREAKER_TRIPPED = "breaker.tripped"

    CASE_BAN = "case.ban"
    CASE_BAN_PROPOSED = "case.ban.proposed"
    CASE_BAN_REJECTED = "case.ban.rejected"
    CASE_CLAIMED = "case.claimed"
    CASE_DISMISS = "case.dismiss"
    CASE_DISMISS_PROPOSED = "case.dismiss.proposed"
    CASE_DISMISS_REJECTED = "case.dismiss.rejected"
    CASE_ESCALATE = "case.escalate"
    CASE_ESCALATE_PROPOSED = "case.escalate.proposed"
    CASE_ESCALATE_REJECTED = "case.escalate.rejected"
    CASE_OPENED = "case.opened"
    CASE_REASSIGNED = "case.reassigned"
    CASE_RELEASED = "case.released"
    CASE_REMOVE = "case.remove"
    CASE_REMOVE_PROPOSED = "case.remove.proposed"
    CASE_REMOVE_REJECTED = "case.remove.rejected"
    CASE_REPORT = "case.report"
    CASE_REPORT_PROPOSED = "case.report.proposed"
    CASE_REPORT_REJECTED = "case.report.rejected"
    CASE_ROLLED_BACK = "case.rolled_back"
    CASE_SIGNALS_ADDED = "case.signals_added"
    CASE_TAKEN_OVER = "case.taken_over"
    CASE_UNDO = "case.undo"
    CASES_RELEASED_SIGNED_OUT = "case.released_signed_out"

    CLUSTER_ACTION_APPROVED = "cluster.action_approved"
    CLUSTER_ACTION_FINISHED = "cluster.action_finished"
    CLUSTER_ACTION_PROPOSED = "cluster.action_proposed"
    CLUSTER_ACTION_REJECTED = "cluster.action_rejected"
    CLUSTER_OPENED = "cluster.opened"
    CLUSTER_VIEWED = "cluster.viewed"

    CYBERTIP_APPROVED = "cybertip.approved"
    CYBERTIP_EDITED = "cybertip.edited"
    CYBERTIP_FAILED = "cybertip.failed"
    CYBERTIP_FILED = "cybertip.filed"
    CYBERTIP_RETRACT = "cybertip.retract"
    CYBERTIP_RETRIED = "cybertip.retried"
    CYBERTIP_SUBMITTED = "cybertip.submitted"
    CYBERTIP_VIEWED = "cybertip.viewed"

    DSA_STATEMENT_REFUSED = "dsa.statement_refused"
    DSA_STATEMENTS_RESUBMITTED = "dsa.statements_resubmitted"
    DSA_STATEMENTS_SUBMITTED = "dsa.statements_submitted"

    ENFORCEMENT_CONFIRMED = "enforcement.confirmed"
    ENFORCEMENT_RETRIED = "enforcement.retried"

    EVIDENCE_DESTRUCTION_APPROVED = "evidence.destruction_approved"
    EVIDENCE_DESTRUCTION_REJECTED = "evidence.destruction_rejected"
    EVIDENCE_DESTRUCTION_REQUESTED = "evidence.destruction_requested"
    EVIDENCE_HOLD_CHANGED = "evidence.hold_changed"
    EVIDENCE_HOLD_PLACED = "evidence.hold_placed"
    EVIDENCE_INTEGRITY_ALERT = "evidence.integrity_alert"
    EVIDENCE_PURGED = "evidence.purged"
    EVIDENCE_REVEALED = "evidence.revealed"
    EVIDENCE_VIEWED_BLURRED = "evidence.viewed_blurred"

    ITEM_DELETED = "item.deleted"
    ITEM_RECEIVED = "item.received"

    LEGAL_AGENCY_MESSAGE = "legal.agency_message"
    LEGAL_CLOSED = "legal.closed"
    LEGAL_DOCUMENT_DOWNLOADED = "legal.document_downloaded"
    LEGAL_HOLDS_PLACED = "legal.holds_placed"
    LEGAL_PORTAL_VIEWED = "legal.portal_viewed"
    LEGAL_QUEUE_VIEWED = "legal.queue_viewed"
    LEGAL_REJECTED = "legal.rejected"
    LEGAL_REQUEST_SUBMITTED = "legal.request_submitted"
    LEGAL_REQUEST_VERIFIED = "legal.request_verified"
    LEGAL_REQUEST_VIEWED = "legal.request_viewed"
    LEGAL_RESPONDED = "legal.responded"
    LEGAL_SUBJECTS_LINKED = "legal.subjects_linked"

    MATCH_RETROACTIVE = "match.retroactive"
    MATCH_SHARED_OUTWARD = "match.shared_outward"
    MATCH_SUPPRESSED = "match.suppressed"

    METRICS_TRANSPARENCY_EXPORTED = "metrics.transparency_exported"

    AUDIT_EXPORTED = "audit.exported"
    AUDIT_SEARCHED = "audit.searched"

    REFERRALS_EXPORTED = "referrals.exported"

    REPORTER_MUTED = "reporter.muted"
    REPORTER_TRUSTED = "reporter.trusted"
    REPORTER_UNMUTED = "reporter.unmuted"
    REPORTER_UNTRUSTED = "reporter.untrusted"

    SEARCH_PERFORMED = "search.performed"

    POLICY_CHANGED = "policy.changed"
    POLICY_CREATED = "policy.created"

    QA_REVIEWED = "qa.reviewed"

    RULE_BACKTESTED = "rule.backtested"
    RULE_CHANGED = "rule.changed"
    RULE_CREATED = "rule.created"
    RULE_FIRED = "rule.fired"
    RULE_ROLLED_BACK = "rule.rolled_back"

    REPORT_RECEIVED = "report.received"

    SUBJECT_NETWORK_VIEWED = "subject.network_viewed"
    SUBJECT_NOTE_ADDED = "subject.note_added"
    SUBJECT_PIVOT_VIEWED = "subject.pivot_viewed"
    SUBJECT_TAG_REMOVED = "subject.tag_removed"
    SUBJECT_TAGGED = "subject.tagged"
    SUBJECT_VIEWED = "subject.viewed"

    TEXT_TERM_CHANGED = "text_term.changed"
    TEXT_TERM_CREATED = "text_term.created"
    TEXT_TERM_DELETED = "text_term.deleted"

    @classmethod
    def decision(cls, action, stage=""):
        """The event of a decision: `case.ban`, or `case.ban.proposed` / `case.ban.rejected` under dual control."""
        return cls(f"case.{action}" + (f".{stage}" if stage else ""))
