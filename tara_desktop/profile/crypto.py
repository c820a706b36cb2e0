"""Record encryption for the profile: authenticated encryption bound to the record it belongs to.

Every key *generation* has a random 32-byte secret. From it, HKDF-SHA256 derives the record key
(AES-256-GCM), the HMAC key of the audit trail, the key of the settings lookup index and the anchor key.
A secret is stored only *wrapped*: Fernet-encrypted under a key-encryption key (KEK) that comes from the
OS keyring or from the user's passphrase through scrypt.

A sealed record (version 2) is ``0x02 | nonce | AES-256-GCM(binding + "\\n" + payload)`` through
``cryptography``'s AESGCM (no cipher code of our own). The binding names the table and row
(``"messages/12/3"``), so a ciphertext copied onto another row is detected when it is opened, as is any
changed byte (the GCM tag). Records written by older TARA versions are Fernet tokens (version 1, first
byte 0x80) and still open, through ``Fernet.decrypt``; a key rotation rewrites them as version 2.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SECRET_BYTES = 32
_V2 = b"\x02"  # record version 2: AES-256-GCM (a Fernet token, version 1, starts with 0x80)
_NONCE = 12

# scrypt cost for passphrase-derived keys: 2**17 * 8 * 128 B = 128 MiB, ~0.4 s on an idle core (current
# guidance: N >= 2**17 with r=8, p=1). Stored per KEK: a key made with less is re-wrapped at the next
# unlock. ``TARA_SCRYPT_N`` lowers it for test suites only (never below 2**14).
SCRYPT_N = 2**17
SCRYPT_MIN_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1


def scrypt_n() -> int:
    """The scrypt cost for new passphrase keys."""
    raw = os.environ.get("TARA_SCRYPT_N")
    if not raw:
        return SCRYPT_N
    try:
        n = int(raw)
    except ValueError:
        return SCRYPT_N
    if n < SCRYPT_MIN_N or n & (n - 1):
        return SCRYPT_N
    return n


class IntegrityFailure(Exception):
    """A sealed record failed to open: its bytes changed, or it belongs to another record."""


def new_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _fernet(key32: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(key32))


def _seal(fernet: Fernet, binding: str, payload: bytes) -> bytes:
    token = fernet.encrypt(binding.encode("ascii") + b"\n" + payload)
    return base64.urlsafe_b64decode(token)


def _open(fernet: Fernet, binding: str, sealed: bytes) -> bytes:
    try:
        plain = fernet.decrypt(base64.urlsafe_b64encode(sealed))
    except (InvalidToken, ValueError, TypeError) as exc:
        raise IntegrityFailure("its bytes were changed") from exc
    head, sep, payload = plain.partition(b"\n")
    if not sep or head != binding.encode("ascii"):
        raise IntegrityFailure("it holds the encrypted content of another record")
    return payload


class RecordKeys:
    """The keys of one generation, derived from its secret."""

    def __init__(self, gen: int, secret: bytes) -> None:
        self.gen = gen
        self.secret = secret  # kept to wrap it under a new KEK when the key source changes
        record_key = _hkdf(secret, b"tara/profile/records/fernet/v1")
        self._fernet = _fernet(record_key)  # opens version-1 records (Fernet tokens)
        self._aead = AESGCM(_hkdf(secret, b"tara/profile/records/aes256gcm/v2"))
        self._mac_key = _hkdf(secret, b"tara/profile/audit/hmac/v1")
        self._index_key = _hkdf(secret, b"tara/profile/settings/index/v1")
        self._anchor_key = _hkdf(secret, b"tara/profile/anchor/hmac/v1")

    def seal(self, binding: str, payload: bytes) -> bytes:
        """A version-2 record: ``0x02 | nonce 12 B | AES-256-GCM(binding + "\\n" + payload) | tag 16 B``,
        the version byte authenticated as associated data."""
        nonce = os.urandom(_NONCE)
        return _V2 + nonce + self._aead.encrypt(nonce, binding.encode("ascii") + b"\n" + payload, _V2)

    def open(self, binding: str, sealed: bytes) -> bytes:
        """Open a record of either version: 2 (AES-GCM) or 1 (a Fernet token, as older TARA wrote)."""
        sealed = bytes(sealed)
        if sealed[:1] != _V2:
            return _open(self._fernet, binding, sealed)
        if len(sealed) < 1 + _NONCE + 16:
            raise IntegrityFailure("its bytes were changed")
        try:
            plain = self._aead.decrypt(sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :], _V2)
        except InvalidTag as exc:
            raise IntegrityFailure("its bytes were changed") from exc
        head, sep, payload = plain.partition(b"\n")
        if not sep or head != binding.encode("ascii"):
            raise IntegrityFailure("it holds the encrypted content of another record")
        return payload

    def mac(self, data: bytes) -> bytes:
        return hmac.digest(self._mac_key, data, "sha256")

    def anchor_mac(self, data: bytes) -> bytes:
        """The signature of the profile's anchor (kept outside the database)."""
        return hmac.digest(self._anchor_key, data, "sha256")

    def lookup(self, name: str) -> bytes:
        """A keyed hash of a setting's name: the settings table is indexed without names in clear."""
        return hmac.digest(self._index_key, name.encode("utf-8", "surrogatepass"), "sha256")


def wrap_secret(kek: bytes, binding: str, secret: bytes) -> bytes:
    return _seal(_fernet(kek), binding, secret)


def unwrap_secret(kek: bytes, binding: str, wrapped: bytes) -> bytes:
    return _open(_fernet(kek), binding, wrapped)


def normalize_passphrase(passphrase: str) -> bytes:
    """The same typed passphrase gives the same bytes whatever the input method composed."""
    return unicodedata.normalize("NFC", passphrase).encode("utf-8", "surrogatepass")


def derive_kek(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(normalize_passphrase(passphrase))


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
