"""WeChat Pay v3 callback checks: SHA256-RSA2048 over `ts\\nnonce\\nbody\\n` and AEAD_AES_256_GCM resource decryption;
RSA-OAEP encryption of the sensitive request fields (a transfer's user_name) with the WeChat Pay public key.

Done here with `cryptography` rather than through the SDK's callback(): the SDK answers a serial it does not
know by downloading certificates from the gateway (network I/O inside a verification), and it returns the same
None for a bad signature and a bad ciphertext.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP, PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA1, SHA256
from cryptography.hazmat.primitives.serialization import load_pem_public_key


class DecryptError(Exception):
    pass


def load_platform_key(pem: str) -> RSAPublicKey:
    """The WeChat Pay public key (public-key mode); raises ValueError on anything else."""
    try:
        key = load_pem_public_key(pem.strip().encode())
    except Exception as exc:  # malformed PEM (ValueError) or a key type cryptography does not support
        raise ValueError("platform_public_key is not a PEM public key") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError("the WeChat Pay public key must be RSA")
    return key


def callback_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    # The raw body bytes, not a re-serialisation: the signature covers exactly what was sent.
    return timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"


def verify(public_key: RSAPublicKey, timestamp: str, nonce: str, body: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(signature, callback_message(timestamp, nonce, body), PKCS1v15(), SHA256())
    except InvalidSignature:
        return False
    return True


def decrypt_resource(apiv3_key: str, *, nonce: str, ciphertext_b64: str, associated_data: str) -> bytes:
    """AES-256-GCM with the 32-byte APIv3 key; the tag is appended to the ciphertext, nonce and AAD are UTF-8."""
    try:
        data = base64.b64decode(ciphertext_b64, validate=True)
        return AESGCM(apiv3_key.encode()).decrypt(nonce.encode(), data, associated_data.encode())
    except (InvalidTag, binascii.Error, ValueError) as exc:
        raise DecryptError("resource does not decrypt") from exc


def encrypt_sensitive(public_key: RSAPublicKey, text: str) -> str:
    """A sensitive field as WeChat Pay takes it ("敏感信息加密"): RSAES-OAEP with SHA-1 and MGF1-SHA-1, base64.
    The request must then name the key in Wechatpay-Serial."""
    # SHA-1 is what the protocol fixes for OAEP (as a mask/label hash, not a signature): WeChat decrypts nothing else.
    oaep = OAEP(mgf=MGF1(algorithm=SHA1()), algorithm=SHA1(), label=None)  # noqa: S303
    sealed = public_key.encrypt(text.encode(), oaep)
    return base64.b64encode(sealed).decode()
