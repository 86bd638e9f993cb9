"""EncryptedTextField: AES-GCM ciphertext with its key id, so keys can rotate (see core.crypto)."""

from __future__ import annotations

from django.db import models

from core import crypto


class EncryptedTextField(models.TextField):
    """Stores `v1:<kid>:<b64>`; Python side is plaintext. Not searchable: pair it with a keyed-hash column."""

    def contribute_to_class(self, cls, name, *args, **kwargs):
        super().contribute_to_class(cls, name, *args, **kwargs)
        self._context = f"{cls._meta.label_lower}.{name}"

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return crypto.decrypt(value, context=self._context)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return crypto.encrypt(value, context=self._context)
