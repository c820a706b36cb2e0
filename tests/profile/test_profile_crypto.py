"""Records are sealed with `cryptography`'s own AEAD (AES-256-GCM, version 2) and records written by older
TARA versions (Fernet tokens, version 1) still open; nothing in the profile drives a block cipher by hand."""

from __future__ import annotations

import base64
import hashlib
import inspect
import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from tara_desktop.profile import crypto
from tara_desktop.profile.crypto import IntegrityFailure, RecordKeys

SECRET = os.urandom(32)
KEYS = RecordKeys(1, SECRET)
FERNET = Fernet(base64.urlsafe_b64encode(crypto._hkdf(SECRET, b"tara/profile/records/fernet/v1")))


def test_no_hand_rolled_cipher() -> None:
    """No block-cipher primitives driven by hand: only Fernet and AESGCM from `cryptography`."""
    source = inspect.getsource(crypto)
    for primitive in ("Cipher(", "modes.", "algorithms.", "FernetReader"):
        assert primitive not in source, primitive


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_new_records_roundtrip_and_old_fernet_records_still_open(data: bytes) -> None:
    sealed = KEYS.seal("messages/7/1", data)
    assert sealed[0] == 0x02 and KEYS.open("messages/7/1", sealed) == data
    old = base64.urlsafe_b64decode(FERNET.encrypt(b"messages/7/1\n" + data))  # as TARA wrote before
    assert old[0] == 0x80 and KEYS.open("messages/7/1", old) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.data(), st.booleans())
def test_any_changed_byte_is_rejected(data: bytes, choice: st.DataObject, old_format: bool) -> None:
    if old_format:
        raw = bytearray(base64.urlsafe_b64decode(FERNET.encrypt(b"settings/3\n" + data)))
    else:
        raw = bytearray(KEYS.seal("settings/3", data))
    index = choice.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= choice.draw(st.integers(1, 255))
    with pytest.raises(IntegrityFailure):
        KEYS.open("settings/3", bytes(raw))


def test_truncated_and_extended_records_are_rejected() -> None:
    for raw in (KEYS.seal("settings/3", b"hello"), base64.urlsafe_b64decode(FERNET.encrypt(b"settings/3\nhello"))):
        for bad in (raw[:-1], raw[:-16], raw + b"\0" * 16, b"", raw[:1], raw[:20], hashlib.sha256(raw).digest()):
            with pytest.raises(IntegrityFailure):
                KEYS.open("settings/3", bad)


def test_record_seal_is_bound_to_its_record_and_key() -> None:
    keys = RecordKeys(1, os.urandom(32))
    sealed = keys.seal("messages/7/1", b"payload")
    assert keys.open("messages/7/1", sealed) == b"payload"
    with pytest.raises(IntegrityFailure, match="another record"):
        keys.open("messages/8/1", sealed)
    with pytest.raises(IntegrityFailure):
        RecordKeys(1, os.urandom(32)).open("messages/7/1", sealed)  # another key
    assert len(sealed) == 1 + 12 + len(b"messages/7/1\npayload") + 16
    assert sealed != keys.seal("messages/7/1", b"payload")  # a fresh nonce every time


def test_a_profile_written_by_an_older_tara_still_reads_and_rotation_upgrades_it(tmp_path: Path) -> None:
    from tara_desktop.profile import Profile
    from tara_desktop.profile.crypto import _seal

    from .profile_helpers import raw

    with Profile.open(tmp_path / "p") as p:
        cid = p.store.create_conversation("old")
        mid = p.store.append_message(cid, "user", "written in version 1")
        keys = p._vault.current
        row = p._vault.conn.execute("SELECT data FROM messages WHERE id = ?", (mid,)).fetchone()
        payload = keys.open(f"messages/{mid}/{cid}", row[0])
        v1 = _seal(keys._fernet, f"messages/{mid}/{cid}", payload)  # exactly what older TARA stored
    with raw(tmp_path / "p") as conn:
        conn.execute("UPDATE messages SET data = ? WHERE id = ?", (v1, mid))
    with Profile.open(tmp_path / "p") as p:
        assert p.store.message(mid).content == "written in version 1"
        assert p.verify_integrity().ok
        p.rotate_key()
        assert p.store.message(mid).content == "written in version 1"
    with raw(tmp_path / "p") as conn:
        assert conn.execute("SELECT data FROM messages WHERE id = ?", (mid,)).fetchone()[0][0] == 0x02
