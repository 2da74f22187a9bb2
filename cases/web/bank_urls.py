from django.urls import path

from cases.web import banks as views

app_name = "banks"

urlpatterns = [
    path("", views.bank_list, name="list"),
    path("new/", views.bank_new, name="new"),
    path("<int:pk>/", views.bank_detail, name="detail"),
    path("<int:pk>/edit/", views.bank_edit, name="edit"),
    path("<int:pk>/import/", views.bank_import, name="import"),
    path("<int:pk>/export/", views.bank_export, name="export"),
    path("<int:pk>/entries/<int:entry_id>/delete/", views.entry_delete, name="entry_delete"),
    path("<int:pk>/entries/<int:entry_id>/deconfirm/", views.entry_deconfirm, name="entry_deconfirm"),
    path("<int:pk>/entries/<int:entry_id>/reconfirm/", views.entry_reconfirm, name="entry_reconfirm"),
    path("<int:pk>/feedback/export/", views.feedback_export, name="feedback_export"),
    path("<int:pk>/feedback/send/", views.feedback_send, name="feedback_send"),
]
