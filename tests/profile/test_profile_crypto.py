"""The record cipher is Fernet: tokens interoperate with `cryptography`'s Fernet in both directions."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.fernet import Fernet, InvalidToken
from hypothesis import given, settings
from hypothesis import strategies as st

from tara_desktop.profile.crypto import FernetReader, IntegrityFailure, RecordKeys

KEY = os.urandom(32)
FERNET = Fernet(base64.urlsafe_b64encode(KEY))
READER = FernetReader(KEY)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_reader_opens_what_fernet_wrote(data: bytes) -> None:
    assert READER.decrypt(base64.urlsafe_b64decode(FERNET.encrypt(data))) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.data())
def test_any_changed_byte_is_rejected_by_both(data: bytes, choice: st.DataObject) -> None:
    raw = bytearray(base64.urlsafe_b64decode(FERNET.encrypt(data)))
    index = choice.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= choice.draw(st.integers(1, 255))
    with pytest.raises(IntegrityFailure):
        READER.decrypt(bytes(raw))
    with pytest.raises(InvalidToken):
        FERNET.decrypt(base64.urlsafe_b64encode(bytes(raw)))


def test_truncated_and_extended_tokens_are_rejected() -> None:
    raw = base64.urlsafe_b64decode(FERNET.encrypt(b"hello"))
    for bad in (raw[:-1], raw[:-16], raw + b"\0" * 16, b"", b"\x80" + raw[1:20]):
        with pytest.raises(IntegrityFailure):
            READER.decrypt(bad)


def test_record_seal_is_a_fernet_token_bound_to_its_record() -> None:
    keys = RecordKeys(1, os.urandom(32))
    sealed = keys.seal("messages/7/1", b"payload")
    assert keys.open("messages/7/1", sealed) == b"payload"
    with pytest.raises(IntegrityFailure, match="another record"):
        keys.open("messages/8/1", sealed)
    with pytest.raises(IntegrityFailure):
        RecordKeys(1, os.urandom(32)).open("messages/7/1", sealed)  # another key
    assert sealed[0] == 0x80 and len(sealed) % 16 == (1 + 8 + 16 + 32) % 16
