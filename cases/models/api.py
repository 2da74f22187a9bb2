"""Tokens the platform authenticates with on the API."""

import hashlib
import secrets

from django.db import models


class ApiToken(models.Model):
    """A platform's API credential. Only a SHA-256 of the secret is stored."""

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash_key(key):
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, name):
        key = "rc_" + secrets.token_urlsafe(32)
        token = cls.objects.create(name=name, prefix=key[:10], key_hash=cls.hash_key(key))
        return token, key
