"""Export (readable, atomic, audited) and delete-everything (nothing recoverable left)."""

from __future__ import annotations

import json
import uuid
import zipfile
from pathlib import Path

import pytest

from tara_desktop.profile import Profile, ProfileError

from .profile_helpers import files_containing


def _fill(p: Profile, canary: str) -> tuple[int, int]:
    cid = p.store.create_conversation(f"Trip {canary}")
    p.store.append_message(cid, "user", f"Where to? {canary}", {"emotion": "happy"})
    p.store.append_message(cid, "assistant", "Lisbon!")
    p.store.set_pinned_domain(cid, "general")
    p.store.set_setting("voice", "en-GB")
    bid = p.store.put_blob("voice", "take/1.wav", b"RIFF audio")
    p.consent.set("record_voice", True)
    return cid, bid


def test_export_folder_is_complete_and_readable(profile: Profile, tmp_path: Path) -> None:
    _fill(profile, "x")
    out = tmp_path / "export"
    summary = profile.export(out)
    assert summary["messages"] == 2 and summary["damaged_records"] == []
    assert sorted(p.name for p in out.iterdir()) == [
        "audit.json", "blobs", "blobs.json", "consent.json", "conversations.json", "manifest.json", "settings.json"]
    conversations = json.loads((out / "conversations.json").read_text(encoding="utf-8"))
    assert conversations[0]["title"] == "Trip x" and conversations[0]["pinned_domain"] == "general"
    assert [(m["role"], m["content"], m["meta"]) for m in conversations[0]["messages"]] == [
        ("user", "Where to? x", {"emotion": "happy"}), ("assistant", "Lisbon!", {})]
    assert json.loads((out / "settings.json").read_text()) == {"voice": "en-GB"}
    consent = json.loads((out / "consent.json").read_text())
    assert consent["current"]["record_voice"]["granted"] is True
    blobs = json.loads((out / "blobs.json").read_text())
    assert blobs[0]["name"] == "take/1.wav" and (out / blobs[0]["file"]).read_bytes() == b"RIFF audio"
    audit = json.loads((out / "audit.json").read_text())
    assert audit["verify"]["ok"] and audit["entries"][0]["event"] == "profile.created"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profile_id"] == profile.profile_id
    entry = profile.audit.entries()[-1]
    assert entry.event == "export" and entry.details["to"] == str(out) and entry.details["messages"] == 2


def test_export_zip_and_no_overwrite(profile: Profile, tmp_path: Path) -> None:
    _fill(profile, "y")
    out = tmp_path / "export.zip"
    profile.export(out)
    with zipfile.ZipFile(out) as zf:
        assert json.loads(zf.read("conversations.json"))[0]["messages"][1]["content"] == "Lisbon!"
    before = out.read_bytes()
    with pytest.raises(ProfileError, match="already exists; choose a new path"):
        profile.export(out)
    assert out.read_bytes() == before
    with pytest.raises(ProfileError, match="inside the profile folder"):
        profile.export(profile.dir / "leak")
    with pytest.raises(ProfileError, match="does not exist"):
        profile.export(tmp_path / "missing" / "out.zip")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp left
    assert [e.event for e in profile.audit.entries()].count("export") == 1


def test_delete_everything_leaves_nothing(profile_dir: Path) -> None:
    canary = f"GONE-{uuid.uuid4().hex}"
    p = Profile.open(profile_dir)
    _fill(p, canary)
    (profile_dir / "models").mkdir()  # other areas keep files in the profile folder too
    (profile_dir / "models" / "adapter.gguf").write_bytes(b"derived from the user's data")
    result = p.delete_everything()
    assert not profile_dir.exists()
    assert "profile.db" in result["removed"]
    with pytest.raises(ProfileError, match="the profile is closed"):
        p.store.list_conversations()
    fresh = Profile.open(profile_dir)  # a new, empty profile
    assert fresh.store.list_conversations() == [] and files_containing(profile_dir, canary) == []
    fresh.close()


def test_delete_keeps_files_it_did_not_create(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("the user's own file")
    p = Profile.open(shared)
    _fill(p, "z")
    result = p.delete_everything()
    assert result["kept"] == ["notes.txt"]
    assert sorted(f.name for f in shared.iterdir()) == ["notes.txt"]
