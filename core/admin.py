from django.contrib import admin

from core.models import Merchant


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "email", "is_active"]
    prepopulated_fields = {"slug": ["name"]}
