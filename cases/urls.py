from django.urls import path

from . import qa_views, report_views, views

app_name = "cases"

urlpatterns = [
    path("queue/", views.queue, name="queue"),
    path("queue/claim/", views.claim_next, name="claim_next"),
    path("cases/<int:pk>/", views.case_detail, name="detail"),
    path("cases/<int:pk>/claim/", views.claim, name="claim"),
    path("cases/<int:pk>/release/", views.release, name="release"),
    path("cases/<int:pk>/decide/", views.decide_view, name="decide"),
    path("cases/<int:pk>/viewing/", views.viewing, name="viewing"),
    path("decisions/<int:decision_id>/undo/", views.undo_view, name="undo"),
    path("decisions/<int:decision_id>/second-review/", views.second_review_view, name="second_review"),
    path("cases/<int:pk>/note/", views.add_note, name="note"),
    path("evidence/<int:item_id>/blurred.jpg", views.evidence_blurred, name="evidence_blurred"),
    path("evidence/<int:item_id>/reveal/", views.evidence_reveal, name="evidence_reveal"),
    path("evidence/<int:item_id>/destroy/", report_views.destroy_evidence, name="evidence_destroy"),
    path("qa/", qa_views.qa_next, name="qa"),
    path("qa/<int:pk>/", qa_views.qa_review, name="qa_review"),
    path("qa/agreement/", qa_views.qa_agreement, name="qa_agreement"),
    path("reports/", report_views.report_list, name="reports"),
    path("reports/<int:pk>/", report_views.report_detail, name="report"),
    path("reports/<int:pk>/edit/", report_views.report_edit, name="report_edit"),
    path("reports/<int:pk>/approve/", report_views.report_action, {"verb": "approve"}, name="report_approve"),
    path("reports/<int:pk>/retry/", report_views.report_action, {"verb": "retry"}, name="report_retry"),
    path("reports/<int:pk>/retract/", report_views.report_action, {"verb": "retract"}, name="report_retract"),
]
