"""The record cipher is `cryptography`'s own Fernet: records interoperate with it in both directions and
nothing in the profile re-implements a cipher."""

from __future__ import annotations

import base64
import hashlib
import inspect
import os

import pytest
from cryptography.fernet import Fernet, InvalidToken
from hypothesis import given, settings
from hypothesis import strategies as st

from tara_desktop.profile import crypto
from tara_desktop.profile.crypto import IntegrityFailure, RecordKeys

SECRET = os.urandom(32)
KEYS = RecordKeys(1, SECRET)
FERNET = Fernet(base64.urlsafe_b64encode(crypto._hkdf(SECRET, b"tara/profile/records/fernet/v1")))


def test_no_hand_rolled_cipher() -> None:
    """Records are opened by Fernet.decrypt, not by block-cipher primitives driven by hand."""
    source = inspect.getsource(crypto)
    assert "hazmat.primitives.ciphers" not in source
    assert not hasattr(crypto, "FernetReader")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_records_open_what_fernet_wrote_and_fernet_opens_records(data: bytes) -> None:
    token = FERNET.encrypt(b"messages/7/1\n" + data)
    assert KEYS.open("messages/7/1", base64.urlsafe_b64decode(token)) == data
    sealed = KEYS.seal("messages/7/1", data)
    assert FERNET.decrypt(base64.urlsafe_b64encode(sealed)) == b"messages/7/1\n" + data


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.data())
def test_any_changed_byte_is_rejected_by_both(data: bytes, choice: st.DataObject) -> None:
    raw = bytearray(KEYS.seal("settings/3", data))
    index = choice.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= choice.draw(st.integers(1, 255))
    with pytest.raises(IntegrityFailure):
        KEYS.open("settings/3", bytes(raw))
    with pytest.raises(InvalidToken):
        FERNET.decrypt(base64.urlsafe_b64encode(bytes(raw)))


def test_truncated_and_extended_tokens_are_rejected() -> None:
    raw = KEYS.seal("settings/3", b"hello")
    for bad in (raw[:-1], raw[:-16], raw + b"\0" * 16, b"", b"\x80" + raw[1:20], hashlib.sha256(raw).digest()):
        with pytest.raises(IntegrityFailure):
            KEYS.open("settings/3", bad)


def test_record_seal_is_a_fernet_token_bound_to_its_record() -> None:
    keys = RecordKeys(1, os.urandom(32))
    sealed = keys.seal("messages/7/1", b"payload")
    assert keys.open("messages/7/1", sealed) == b"payload"
    with pytest.raises(IntegrityFailure, match="another record"):
        keys.open("messages/8/1", sealed)
    with pytest.raises(IntegrityFailure):
        RecordKeys(1, os.urandom(32)).open("messages/7/1", sealed)  # another key
    assert sealed[0] == 0x80 and len(sealed) % 16 == (1 + 8 + 16 + 32) % 16
