from django.urls import path, re_path

from cases.web import api

app_name = "api"

urlpatterns = [
    path("openapi.json", api.openapi, name="openapi"),
    path("items", api.items, name="items"),
    path("items/batch", api.items_batch, name="items_batch"),
    path("items/<int:pk>", api.item_detail, name="item"),
    path("accounts/<str:external_id>", api.account, name="account"),
    path("groups/<str:external_id>", api.group, name="group"),
    path("reports", api.reports, name="reports"),
    path("appeals", api.appeals, name="appeals"),
    path("cases", api.cases, name="cases"),
    path("enforcements", api.enforcements, name="enforcements"),
    path("enforcements/<int:pk>/confirm", api.confirm_enforcement, name="confirm_enforcement"),
    re_path(r"^(?P<path>.*)$", api.not_found, name="not_found"),  # last: a JSON 404, not the HTML page
]
