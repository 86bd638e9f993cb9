import pytest
from django.db import connection

from core import crypto


def test_encrypt_decrypt_with_key_id_and_context():
    token = crypto.encrypt("CARD-1234", context="a.b")
    assert "CARD-1234" not in token
    assert crypto.key_id_of(token) == "t1"
    assert crypto.decrypt(token, context="a.b") == "CARD-1234"
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(token, context="other.field")  # ciphertext cannot be moved to another field


def test_key_rotation_reads_old_tokens_and_writes_new(settings):
    old = crypto.encrypt("SECRET", context="x")
    settings.CARDSHOP_SECRET_KEYS = crypto.generate_key_spec("t2") + "," + settings.CARDSHOP_SECRET_KEYS
    crypto.reset_keyring()
    try:
        assert crypto.decrypt(old, context="x") == "SECRET"
        assert crypto.key_id_of(crypto.encrypt("SECRET", context="x")) == "t2"
    finally:
        crypto.reset_keyring()


def test_mask_never_shows_short_secrets():
    assert crypto.mask("abc") == "********"
    assert crypto.mask("0123456789abcdef") == "********cdef"
    assert crypto.mask("") == ""


def test_card_secret_plaintext_never_reaches_the_database(product):
    secret = product.secrets.first()
    with connection.cursor() as cur:
        cur.execute("SELECT secret FROM cardshop_cardsecret WHERE id = %s", [secret.pk])
        stored = cur.fetchone()[0]
    assert stored.startswith("v1:t1:")
    assert secret.secret not in stored
    assert secret.secret not in str(secret)
