from django.urls import path

from cases.web import clusters as cluster_views
from cases.web import leads as lead_views
from cases.web import legal as legal_views
from cases.web import metrics as metrics_views
from cases.web import qa as qa_views
from cases.web import reports as report_views
from cases.web import review as views
from cases.web import rules as rule_views
from cases.web import search as search_views
from cases.web import subjects as subject_views

app_name = "cases"

urlpatterns = [
    path("queue/", views.queue, name="queue"),
    path("queue/claim/", views.claim_next, name="claim_next"),
    path("cases/<int:pk>/", views.case_detail, name="detail"),
    path("cases/<int:pk>/claim/", views.claim, name="claim"),
    path("cases/<int:pk>/release/", views.release, name="release"),
    path("cases/<int:pk>/take-over/", views.take_over_view, name="take_over"),
    path("cases/<int:pk>/decide/", views.decide_view, name="decide"),
    path("cases/<int:pk>/viewing/", views.viewing, name="viewing"),
    path("decisions/<int:decision_id>/undo/", views.undo_view, name="undo"),
    path("decisions/<int:decision_id>/second-review/", views.second_review_view, name="second_review"),
    path("cases/<int:pk>/note/", views.add_note, name="note"),
    path("evidence/<int:item_id>/blurred.jpg", views.evidence_blurred, name="evidence_blurred"),
    path("evidence/<int:item_id>/reveal/", views.evidence_reveal, name="evidence_reveal"),
    path("evidence/<int:item_id>/destroy/", report_views.destroy_evidence, name="evidence_destroy"),
    path("destruction-requests/", report_views.destruction_requests, name="destruction_requests"),
    path("destruction-requests/<int:pk>/approve/", report_views.destruction_action, {"verb": "approve"},
         name="destruction_approve"),
    path("destruction-requests/<int:pk>/reject/", report_views.destruction_action, {"verb": "reject"},
         name="destruction_reject"),
    path("rules/", rule_views.rule_list, name="rules"),
    path("rules/new/", rule_views.rule_edit, name="rule_new"),
    path("rules/<int:pk>/", rule_views.rule_detail, name="rule"),
    path("rules/<int:pk>/edit/", rule_views.rule_edit, name="rule_edit"),
    path("rules/<int:pk>/backtest/", rule_views.rule_backtest, name="rule_backtest"),
    path("rules/<int:pk>/rollback/", rule_views.rule_rollback, name="rule_rollback"),
    path("rules/breakers/<int:pk>/resume/", rule_views.breaker_resume, name="breaker_resume"),
    path("search/", search_views.search, name="search"),
    path("accounts/<int:pk>/", subject_views.account_page, name="account"),
    path("accounts/<int:pk>/network.svg", subject_views.account_network, name="account_network"),
    path("accounts/<int:pk>/tags/", subject_views.account_tags, name="account_tags"),
    path("groups/<int:pk>/", subject_views.group_page, name="group"),
    path("groups/<int:pk>/network.svg", subject_views.group_network, name="group_network"),
    path("groups/<int:pk>/tags/", subject_views.group_tags, name="group_tags"),
    path("items/<int:pk>/similar/", subject_views.item_pivot, name="item_pivot"),
    path("clusters/", cluster_views.cluster_list, name="clusters"),
    path("clusters/new/", cluster_views.cluster_new, name="cluster_new"),
    path("clusters/<int:pk>/", cluster_views.cluster_page, name="cluster"),
    path("clusters/<int:pk>/propose/", cluster_views.cluster_propose, name="cluster_propose"),
    path("clusters/actions/<int:pk>/review/", cluster_views.cluster_action_review, name="cluster_action_review"),
    path("leads/roster/", lead_views.roster, name="roster"),
    path("leads/release-signed-out/", lead_views.release_signed_out, name="release_signed_out"),
    path("leads/reporters/", lead_views.reporters, name="reporters"),
    path("leads/reporters/<int:pk>/", lead_views.reporter_action, name="reporter_action"),
    path("leads/audit/", lead_views.audit_search, name="audit"),
    path("leads/audit.csv", lead_views.audit_csv, name="audit_csv"),
    path("qa/", qa_views.qa_next, name="qa"),
    path("qa/<int:pk>/", qa_views.qa_review, name="qa_review"),
    path("qa/agreement/", qa_views.qa_agreement, name="qa_agreement"),
    path("metrics/", metrics_views.dashboard, name="metrics"),
    path("metrics/transparency/", metrics_views.transparency, name="transparency"),
    path("metrics/transparency.csv", metrics_views.transparency_csv, name="transparency_csv"),
    path("metrics/reviewers/", metrics_views.reviewers, name="reviewers"),
    path("le/", legal_views.portal, name="portal"),
    path("le/new/", legal_views.portal_new, name="portal_new"),
    path("le/<int:pk>/", legal_views.portal_request, name="portal_request"),
    path("le/<int:pk>/message/", legal_views.portal_message, name="portal_message"),
    path("le/<int:pk>/documents/<int:doc_id>/", legal_views.portal_document, name="portal_document"),
    path("legal/", legal_views.legal_queue, name="legal_queue"),
    path("legal/<int:pk>/", legal_views.legal_request, name="legal_request"),
    path("legal/<int:pk>/verify/", legal_views.legal_action, {"verb": "verify"}, name="legal_verify"),
    path("legal/<int:pk>/link/", legal_views.legal_action, {"verb": "link"}, name="legal_link"),
    path("legal/<int:pk>/hold/", legal_views.legal_action, {"verb": "hold"}, name="legal_hold"),
    path("legal/<int:pk>/respond/", legal_views.legal_action, {"verb": "respond"}, name="legal_respond"),
    path("legal/<int:pk>/close/", legal_views.legal_action, {"verb": "close"}, name="legal_close"),
    path("legal/<int:pk>/reject/", legal_views.legal_action, {"verb": "reject"}, name="legal_reject"),
    path("legal/<int:pk>/documents/<int:doc_id>/", legal_views.legal_document, name="legal_document"),
    path("reports/", report_views.report_list, name="reports"),
    path("reports/<int:pk>/", report_views.report_detail, name="report"),
    path("reports/<int:pk>/edit/", report_views.report_edit, name="report_edit"),
    path("reports/<int:pk>/approve/", report_views.report_action, {"verb": "approve"}, name="report_approve"),
    path("reports/<int:pk>/retry/", report_views.report_action, {"verb": "retry"}, name="report_retry"),
    path("reports/<int:pk>/retract/", report_views.report_action, {"verb": "retract"}, name="report_retract"),
]
