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
]
