"""Hash banks: lists of known material (or known false positives) to match items against."""

from django.db import models


class HashType(models.TextChoices):
    PDQ = "pdq", "PDQ"
    PHASH = "phash", "pHash"
    DHASH = "dhash", "dHash"
    MD5 = "md5", "MD5"
    SHA256 = "sha256", "SHA-256"


HEX_LENGTHS = {HashType.PDQ: 64, HashType.PHASH: 16, HashType.DHASH: 16, HashType.MD5: 32, HashType.SHA256: 64}


class Bank(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=255, blank=True)
    enabled = models.BooleanField(default=True)
    severity = models.PositiveSmallIntegerField(default=90, help_text="0..100, used for case priority")
    pdq_threshold = models.PositiveSmallIntegerField(default=31, help_text="Max Hamming distance of 256 bits")
    phash_threshold = models.PositiveSmallIntegerField(default=6, help_text="Max Hamming distance of 64 bits")
    dhash_threshold = models.PositiveSmallIntegerField(default=6, help_text="Max Hamming distance of 64 bits")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def threshold_for(self, hash_type):
        return {
            HashType.PDQ: self.pdq_threshold,
            HashType.PHASH: self.phash_threshold,
            HashType.DHASH: self.dhash_threshold,
        }.get(hash_type, 0)


class BankHash(models.Model):
    bank = models.ForeignKey(Bank, on_delete=models.CASCADE, related_name="hashes")
    hash_type = models.CharField(max_length=16, choices=HashType)
    value = models.CharField(max_length=64, help_text="Lower-case hex")
    label = models.CharField(max_length=255, blank=True, help_text="Reference from the bank's source")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["bank", "hash_type", "value"]
        verbose_name = "bank hash"
        constraints = [
            models.UniqueConstraint(fields=["bank", "hash_type", "value"], name="unique_bank_hash"),
        ]
        indexes = [models.Index(fields=["hash_type", "value"], name="bankhash_lookup_idx")]

    def __str__(self):
        return f"{self.hash_type}:{self.value[:16]}… in {self.bank}"

    def clean(self):
        from django.core.exceptions import ValidationError  # noqa: PLC0415

        from .banks import normalise_hash  # noqa: PLC0415

        if self.hash_type in HashType.values:
            try:
                self.value = normalise_hash(self.value, self.hash_type)
            except ValueError as exc:
                raise ValidationError({"value": str(exc)}) from None
