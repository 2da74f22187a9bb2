from django.contrib import admin

from .models import Bank, BankHash


@admin.register(Bank)
class BankAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "severity", "pdq_threshold", "phash_threshold", "dhash_threshold", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "description"]


@admin.register(BankHash)
class BankHashAdmin(admin.ModelAdmin):
    list_display = ["value", "hash_type", "bank", "label", "added_at"]
    list_filter = ["hash_type", "bank"]
    search_fields = ["value", "label"]
    list_select_related = ["bank"]
    show_full_result_count = False
