"""The conversation service over the real encrypted profile: summaries in their own table, edits that
lose nothing until sent, and every delete path leaving none of a conversation's text anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tara_desktop.conversation import RECORDING_META, Conversation, Conversations, title_for
from tara_desktop.errors import TaraError
from tara_desktop.llm.context_window import Summary
from tara_desktop.profile import Profile

CANARY = "zebra-canary-7Q4K"


def _profile(tmp_path: Path) -> Profile:
    return Profile.open(tmp_path / "profile", passphrase="pw")


def _fill(profile: Profile, tag: str = CANARY) -> int:
    """A conversation whose title, messages, summary and voice recording all carry ``tag``."""
    c = Conversation(profile.store)
    c.append("user", f"my secret is {tag} please remember", {"source": "typed"})
    c.append("assistant", f"I will remember {tag}.", {"domain": "general"})
    blob = profile.store.put_blob("voice", f"ptt-{tag}", f"RIFF....{tag}".encode())
    c.append("user", f"and again {tag}", {RECORDING_META: blob})
    c.append("assistant", "noted", {"domain": "general"})
    c.save_summary(Summary(f"The user told me {tag}.", 2))
    assert c.id is not None
    return c.id


def _leaks(profile_dir: Path, tag: str, export: Path) -> list[str]:
    """Where ``tag`` can still be read: any file of the profile folder (raw bytes) or a fresh export."""
    found = [str(p) for p in profile_dir.rglob("*") if p.is_file() and tag.encode() in p.read_bytes()]
    found += [str(p) for p in export.rglob("*") if p.is_file() and tag.encode() in p.read_bytes()]
    return found


def _export(profile: Profile, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    profile.export(out)
    return out


def test_summaries_live_in_their_own_table_and_are_exported_and_rotated(tmp_path: Path) -> None:
    with _profile(tmp_path) as profile:
        cid = _fill(profile)
        stored = profile.store.get_summary(cid)
        assert stored is not None and stored.covers == 2 and CANARY in stored.text
        assert not any(k.startswith("summary.") for k in profile.store.settings())
        export = _export(profile, tmp_path, "before")
        conversations = json.loads((export / "conversations.json").read_text())
        assert conversations[0]["summary"]["text"] == stored.text
        before = profile.store.get_summary(cid)
        profile.rotate_key()
        after = profile.store.get_summary(cid)
        assert after is not None and before is not None and after.text == before.text
    with _profile(tmp_path) as again:  # readable with the new key only
        s = again.store.get_summary(cid)
        assert s is not None and s.text == before.text


def test_legacy_summary_settings_move_into_the_table_on_open(tmp_path: Path) -> None:
    with _profile(tmp_path) as profile:
        c = Conversation(profile.store)
        c.append("user", "hello")
        cid = c.id
        assert cid is not None
        profile.store.set_setting(f"summary.{cid}", {"text": f"old {CANARY}", "covers": 1})
        profile.store.set_setting("summary.999", {"text": f"orphan {CANARY}", "covers": 3})  # deleted long ago
        moved = Conversations(profile).migrate()
        assert moved == 2
        assert not any(k.startswith("summary.") for k in profile.store.settings())
        s = profile.store.get_summary(cid)
        assert s is not None and s.text == f"old {CANARY}" and s.covers == 1


def test_edit_then_cancel_loses_nothing_and_sending_replaces_only_the_tail(tmp_path: Path) -> None:
    with _profile(tmp_path) as profile:
        c = Conversation(profile.store)
        ids = [c.append(r, t) for r, t in
               [("user", "one"), ("assistant", "1"), ("user", "two"), ("assistant", "2"), ("user", "three")]]
        assert all(isinstance(i, int) for i in ids)
        draft = c.edit_draft(ids[2])  # Edit clicked...
        assert draft.text == "two" and draft.replaces == ids[2]
        again = Conversation(profile.store, c.id)  # ...and cancelled: everything is still there
        assert [m.content for m in again.messages] == ["one", "1", "two", "2", "three"]
        with pytest.raises(TaraError, match="only your own"):
            c.edit_draft(ids[1])
        regen = c.regenerate_draft(ids[3])
        assert regen.text == "two" and regen.replaces == ids[2]
        assert c.replace_from(draft.replaces) == 3  # sent: the tail goes now
        c.append("user", "two, edited")
        fresh = Conversation(profile.store, c.id)
        assert [m.content for m in fresh.messages] == ["one", "1", "two, edited"]


def test_rewinding_below_a_summary_drops_the_summary(tmp_path: Path) -> None:
    with _profile(tmp_path) as profile:
        c = Conversation(profile.store)
        ids = [c.append(r, t) for r, t in [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")]]
        c.save_summary(Summary("a and b and c", 3))
        assert ids[1] is not None and c.id is not None
        c.replace_from(ids[1])
        assert profile.store.get_summary(c.id) is None and c.summary() is None


def test_title_and_pin(tmp_path: Path) -> None:
    with _profile(tmp_path) as profile:
        c = Conversation(profile.store)
        c.pinned_domain = "creative"
        c.append("user", "  a   very " + "long " * 20 + "first message")
        info = profile.store.conversation(c.id)
        assert info.title == title_for("a very " + "long " * 20) and len(info.title) <= 48
        assert info.pinned_domain == "creative"
        c.rename("Poems")
        c.pin(None)
        info = profile.store.conversation(c.id)
        assert (info.title, info.pinned_domain) == ("Poems", None)
        with pytest.raises(TaraError, match="name"):
            c.rename("   ")


def test_changes_are_announced(tmp_path: Path) -> None:
    with _profile(tmp_path) as profile:
        seen: list[tuple[str, int | None]] = []
        conversations = Conversations(profile)
        stop = conversations.subscribe(lambda kind, cid: seen.append((kind, cid)))
        cid = _fill(profile)
        conversations.rename(cid, "x")
        conversations.delete(cid)
        stop()
        conversations.delete_all()
        assert seen == [("updated", cid), ("deleted", cid)]


# -- every delete path leaves no trace -----------------------------------------------------------------
def test_deleting_a_conversation_leaves_none_of_its_text(tmp_path: Path) -> None:
    with _profile(tmp_path) as profile:
        cid = _fill(profile)
        keep = _fill(profile, "other-kept-text")
        profile.store.set_setting(f"summary.{cid}", {"text": CANARY, "covers": 1})  # as older versions kept it
        Conversations(profile).delete(cid)
        assert [s.conversation_id for s in profile.store.summaries()] == [keep]
        export = _export(profile, tmp_path, "after-delete")
        assert _leaks(profile.dir, CANARY, export) == []
        assert "other-kept-text" in (export / "conversations.json").read_text()  # the other one is intact
        assert profile.store.get_summary(keep) is not None
        assert [b.name for b in profile.store.list_blobs("voice")] == ["ptt-other-kept-text"]


def test_deleting_all_conversations_leaves_none_of_their_text(tmp_path: Path) -> None:
    with _profile(tmp_path) as profile:
        _fill(profile)
        _fill(profile, CANARY + "-2")
        assert Conversations(profile).delete_all() == 2
        export = _export(profile, tmp_path, "after-delete-all")
        assert _leaks(profile.dir, CANARY, export) == []
        assert profile.store.summaries() == [] and profile.store.list_blobs("voice") == []


def test_withdrawing_history_consent_with_delete_collected_leaves_none_of_it(tmp_path: Path) -> None:
    with _profile(tmp_path) as profile:
        cid = _fill(profile)
        profile.store.delete_blob(profile.store.list_blobs("voice")[0].id)  # recordings: their own consent
        profile.consent.withdraw("store_history", delete_collected=True)
        export = _export(profile, tmp_path, "after-withdraw")
        assert _leaks(profile.dir, CANARY, export) == []
        assert profile.store.get_summary(cid) is None


def test_tara_profile_consent_withdrawal_with_delete_collected_leaves_none_of_it(tmp_path: Path) -> None:
    home = tmp_path / "profile"
    with _profile(tmp_path) as profile:
        _fill(profile)
        profile.store.delete_blob(profile.store.list_blobs("voice")[0].id)  # recordings: their own consent
    done = _tara(home, "profile", "consent", "store_history", "no", "--delete-collected")
    assert done.returncode == 0, done.stderr
    with _profile(tmp_path) as profile:
        export = _export(profile, tmp_path, "after-cli-withdraw")
    assert _leaks(home, CANARY, export) == []


def _tara(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "TARA_HOME": str(home), "TARA_PASSPHRASE": "pw"}
    return subprocess.run([sys.executable, "-m", "tara_desktop.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_tara_conversations_list_show_delete(tmp_path: Path) -> None:
    home = tmp_path / "profile"
    with _profile(tmp_path) as profile:
        first = _fill(profile)
        second = _fill(profile, CANARY + "-second")
    listed = _tara(home, "conversations", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [second, first] and rows[0]["messages"] == 4
    shown = _tara(home, "conversations", "show", str(first), "--json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["id"] == first and [m["role"] for m in body["messages"]][:2] == ["user", "assistant"]
    assert CANARY in body["summary"]["text"]
    text = _tara(home, "conversations", "show", str(first))
    assert text.returncode == 0 and CANARY in text.stdout
    for bad, why in ((("show", "77"), "no conversation 77"), (("show", "x"), "not a conversation number"),
                     (("delete", "--all"), "--yes"), (("delete",), "number")):
        r = _tara(home, "conversations", *bad)
        assert r.returncode == 2 and r.stderr.startswith("error:") and why in r.stderr, (bad, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _tara(home, "conversations", "delete", str(first)).returncode == 0
    with _profile(tmp_path) as profile:
        export = _export(profile, tmp_path, "cli-one")
        assert [c.id for c in profile.store.list_conversations()] == [second]
    assert _leaks(home, CANARY + " ", export) == [] and _leaks(home, CANARY + ".", export) == []
    assert _tara(home, "conversations", "delete", "--all", "--yes").returncode == 0
    with _profile(tmp_path) as profile:
        export = _export(profile, tmp_path, "cli-all")
    assert _leaks(home, CANARY, export) == []
    assert json.loads(_tara(home, "conversations", "list", "--json").stdout) == []
