from django.urls import path

from . import views

app_name = "cases"

urlpatterns = [
    path("queue/", views.queue, name="queue"),
    path("queue/claim/", views.claim_next, name="claim_next"),
    path("cases/<int:pk>/", views.case_detail, name="detail"),
    path("cases/<int:pk>/claim/", views.claim, name="claim"),
    path("cases/<int:pk>/release/", views.release, name="release"),
    path("cases/<int:pk>/decide/", views.decide_view, name="decide"),
    path("evidence/<int:item_id>/blurred.jpg", views.evidence_blurred, name="evidence_blurred"),
    path("evidence/<int:item_id>/reveal/", views.evidence_reveal, name="evidence_reveal"),
]
