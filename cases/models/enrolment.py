"""One-time codes that let a person enrol their authenticator: something a password thief lacks."""

import hashlib

from django.conf import settings
from django.db import models


class EnrolmentCode(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrolment_codes")
    code_hash = models.CharField(max_length=64, unique=True)
    issued_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="+")
    issued_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at"]

    def __str__(self):
        state = "used" if self.used_at else f"until {self.expires_at:%Y-%m-%d %H:%M}"
        return f"enrolment code for {self.user} ({state})"

    @staticmethod
    def hash_code(code):
        return hashlib.sha256(code.strip().upper().replace("-", "").encode()).hexdigest()
