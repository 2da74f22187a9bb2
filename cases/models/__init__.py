"""Cases and everything that follows from them: review, decisions, enforcement, CyberTipline reports,
preservation, legal requests, metrics."""

from cases.models.api import ApiToken
from cases.models.appeals import APPEAL_OUTCOME, Appeal, AppealStatus
from cases.models.cybertip import INCIDENT_TYPES, CyberTipExchange, CyberTipFile, CyberTipReport
from cases.models.decisions import Action, Decision, QAReview, ReasonCode
from cases.models.enforcement import Enforcement, EnforcementStatus, Platform, generate_secret
from cases.models.enrolment import EnrolmentCode
from cases.models.investigations import (
    Cluster,
    ClusterAction,
    ClusterActionStatus,
    ClusterMember,
    ClusterOrigin,
    ClusterOutcome,
    SubjectTag,
    TagKind,
)
from cases.models.legal import (
    Agency,
    AgencyMember,
    LegalDocument,
    LegalMessage,
    LegalRequest,
    LegalRequestKind,
    LegalRequestStatus,
)
from cases.models.metrics import DailyMetric
from cases.models.policies import (
    NEEDS_VIEW,
    REPORTABLE,
    BankEffect,
    BanScope,
    Policy,
    PolicyCategory,
    PolicyVersion,
    RemoveScope,
)
from cases.models.preferences import ViewingPreference
from cases.models.preservation import DestructionRequest, IntegrityAlert, LegalHold
from cases.models.review import Case, CaseStatus, CaseView, QueueStats, ReviewQueue, RoutingRule, SubjectNote
from cases.models.rules import (
    Breaker,
    BreakerScope,
    FiringOutcome,
    Rule,
    RuleEffect,
    RuleFiring,
    RuleMode,
    RuleVersion,
)
from cases.models.statements import DsaStatus, Ground, Restriction, Source, StatementOfReasons

__all__ = [
    "APPEAL_OUTCOME",
    "Appeal",
    "AppealStatus",
    "Cluster",
    "ClusterAction",
    "ClusterActionStatus",
    "ClusterMember",
    "ClusterOrigin",
    "ClusterOutcome",
    "INCIDENT_TYPES", "NEEDS_VIEW", "REPORTABLE", "Action", "Agency", "AgencyMember", "ApiToken", "BanScope",
    "BankEffect", "Breaker", "BreakerScope", "Case", "CaseStatus", "CaseView", "CyberTipExchange", "CyberTipFile",
    "CyberTipReport", "DailyMetric", "Decision", "DestructionRequest", "DsaStatus", "Enforcement",
    "EnforcementStatus", "EnrolmentCode", "FiringOutcome", "Ground", "IntegrityAlert", "LegalDocument", "LegalHold",
    "LegalMessage", "LegalRequest", "LegalRequestKind", "LegalRequestStatus", "Platform", "Policy", "PolicyCategory",
    "PolicyVersion", "QAReview", "QueueStats", "ReasonCode", "RemoveScope", "Restriction", "ReviewQueue",
    "RoutingRule", "Rule", "RuleEffect", "RuleFiring", "RuleMode", "RuleVersion", "Source", "StatementOfReasons",
    "SubjectNote", "SubjectTag", "TagKind", "ViewingPreference", "generate_secret",
]
