"""Nothing the user wrote reaches the disk in plain text: not in the database, -wal, -shm or any other file."""

from __future__ import annotations

import uuid
from pathlib import Path

from tara_desktop.profile import Profile

from .profile_helpers import files_containing


def _fill(p: Profile, canary: str) -> None:
    store = p.store
    cid = store.create_conversation(f"title {canary}")
    store.append_message(cid, "user", f"my secret is {canary}", {"note": canary})
    mid = store.append_message(cid, "assistant", "ok")
    store.update_message(mid, f"edited {canary}")
    store.set_setting(f"setting-{canary}", {"value": canary})
    store.put_blob("voice", f"{canary}.wav", f"audio {canary}".encode())
    store.put_blob("dataset", "data.jsonl", f'{{"text": "{canary}"}}'.encode("utf-16"))
    p.audit.append("model.import", {"path": f"/models/{canary}.gguf"})
    p.consent.set("record_voice", True)
    assert store.search(canary)  # searching decrypts in memory only


def test_canary_never_reaches_any_file(profile_dir: Path) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}-ÄÖÜ-漢字"
    p = Profile.open(profile_dir)
    _fill(p, canary)
    # While open: the -wal and -shm files exist and hold the latest pages.
    assert (profile_dir / "profile.db-wal").exists()
    assert files_containing(profile_dir, canary) == []
    assert files_containing(profile_dir, canary.split("-")[1]) == []  # the hex part alone
    p.rotate_key()
    assert files_containing(profile_dir, canary) == []
    p.close()
    assert files_containing(profile_dir, canary) == []
    assert [f.name for f in profile_dir.iterdir()] == ["profile.db"]  # no temp or log files


def test_the_scanner_finds_plain_text(tmp_path: Path) -> None:
    """The canary check would see a leak in any of the encodings."""
    for enc in ("utf-8", "utf-16-le", "utf-16-be"):
        (tmp_path / f"leak-{enc}").write_bytes(b"xx" + "CANARY-Ä".encode(enc) + b"yy")
    assert len(files_containing(tmp_path, "CANARY-Ä")) == 3
