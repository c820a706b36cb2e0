"""The store: conversations, messages, settings, blobs — through real encryption and real SQLite."""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tara_desktop.errors import TaraError
from tara_desktop.profile import Profile, ProfileError


def test_conversation_lifecycle(profile: Profile) -> None:
    store = profile.store
    a = store.create_conversation("First")
    b = store.create_conversation("Second")
    store.append_message(a, "user", "hello")
    infos = store.list_conversations()
    assert [c.id for c in infos] == [a, b]  # the one with the newest activity first
    assert infos[0].title == "First" and infos[0].pinned_domain is None
    store.rename_conversation(b, "Renamed")
    store.set_pinned_domain(b, "healthcare")
    info_b = store.conversation(b)
    assert (info_b.title, info_b.pinned_domain) == ("Renamed", "healthcare")
    store.set_pinned_domain(b, None)
    assert store.conversation(b).pinned_domain is None
    store.delete_conversation(a)
    assert [c.id for c in store.list_conversations()] == [b]
    with pytest.raises(ProfileError, match=f"conversation {a} does not exist"):
        store.append_message(a, "user", "into a deleted conversation")


def test_messages_update_delete_after_and_search(profile: Profile) -> None:
    store = profile.store
    cid = store.create_conversation("chat")
    ids = [store.append_message(cid, role, text, {"n": i})
           for i, (role, text) in enumerate([("user", "Tell me about Kiwis"), ("assistant", "Kiwis are birds"),
                                             ("user", "and apples?"), ("assistant", "Apples are fruit")])]
    msgs = store.messages(cid)
    assert [m.id for m in msgs] == ids
    assert [m.meta["n"] for m in msgs] == [0, 1, 2, 3]
    assert all(m.conversation_id == cid for m in msgs)

    store.update_message(ids[1], "Kiwis are flightless birds")
    assert store.message(ids[1]).content == "Kiwis are flightless birds"
    assert store.message(ids[1]).meta == {"n": 1}  # meta kept when not given
    store.update_message(ids[1], "edited", {"edited": True})
    assert store.message(ids[1]).meta == {"edited": True}

    assert [m.id for m in store.search("KIWIS")] == [ids[0]]
    assert store.search("") == []
    assert store.delete_messages_after(cid, ids[1]) == 2
    assert [m.id for m in store.messages(cid)] == ids[:2]
    with pytest.raises(ProfileError, match="message 999 does not exist"):
        store.update_message(999, "x")


def test_settings_blobs_and_counts(profile: Profile) -> None:
    store = profile.store
    assert store.get_setting("theme", "light") == "light"
    store.set_setting("theme", "dark")
    store.set_setting("theme", {"mode": "dark", "size": 12})  # replaces
    store.set_setting("volume", 0.5)
    assert store.get_setting("theme") == {"mode": "dark", "size": 12}
    assert store.settings() == {"theme": {"mode": "dark", "size": 12}, "volume": 0.5}
    store.delete_setting("volume")
    assert store.get_setting("volume") is None

    a = store.put_blob("voice", "take 1.wav", b"RIFF\x00\x01")
    b = store.put_blob("dataset", "notes.jsonl", b'{"text": "x"}\n' * 1000)
    assert store.get_blob(a) == b"RIFF\x00\x01"
    assert [(x.id, x.name, x.size) for x in store.list_blobs("voice")] == [(a, "take 1.wav", 6)]
    assert {x.id for x in store.list_blobs()} == {a, b}
    store.delete_blob(a)
    assert store.list_blobs("voice") == []
    with pytest.raises(ProfileError, match=f"blob {a} does not exist"):
        store.get_blob(a)
    counts = store.counts()
    assert counts["settings"] == 1 and counts["blobs"] == {"dataset": 1}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.set_setting("k", object()), "must be JSON values"),
        (lambda s: s.append_message(s.create_conversation(), "user", "x", {"bad": {1, 2}}), "must be JSON values"),
        (lambda s: s.append_message(s.create_conversation(), "user", b"bytes"), "must be text"),
        (lambda s: s.put_blob("Bad Kind!", "n", b""), "is not a blob kind"),
        (lambda s: s.put_blob("voice", "n", "not bytes"), "must be bytes"),
        (lambda s: s.set_pinned_domain(s.create_conversation(), "no spaces allowed"), "is not a domain name"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(profile: Profile, call: Any, match: str) -> None:
    before = profile.store.counts()["messages"]
    with pytest.raises(TaraError, match=match):
        call(profile.store)
    assert profile.store.counts()["messages"] == before


def test_consent_first_use_withdraw_and_delete_collected(profile: Profile) -> None:
    consent = profile.consent
    assert consent.pending() == ["store_history", "record_voice", "train_on_my_data", "online_voice"]
    assert consent.get("store_history") is True and consent.get("record_voice") is False
    consent.set("record_voice", True)
    consent.set("train_on_my_data", True)
    assert consent.get("record_voice") and consent.is_chosen("record_voice")
    voice = profile.store.put_blob("voice", "a.wav", b"audio")
    profile.store.put_blob("dataset", "d.jsonl", b"{}")
    profile.store.put_blob("model", "keep.gguf", b"GGUF")
    cid = profile.store.create_conversation("kept until history is withdrawn")
    profile.store.append_message(cid, "user", "hi")

    assert consent.collected("record_voice") == 1
    assert consent.withdraw("record_voice") == 0  # withdrawing alone keeps what was collected
    assert consent.get("record_voice") is False
    assert [b.id for b in profile.store.list_blobs("voice")] == [voice]
    assert consent.delete_collected("record_voice") == 1
    assert profile.store.list_blobs("voice") == []
    assert consent.withdraw("train_on_my_data", delete_collected=True) == 1
    assert consent.withdraw("store_history", delete_collected=True) == 1
    assert profile.store.counts()["messages"] == 0
    assert [b.name for b in profile.store.list_blobs()] == ["keep.gguf"]

    assert [(h["kind"], h["granted"]) for h in consent.history()] == [
        ("record_voice", True), ("train_on_my_data", True), ("record_voice", False),
        ("train_on_my_data", False), ("store_history", False)]
    events = [e.event for e in profile.audit.entries()]
    assert events.count("consent") == 5 and events.count("delete") == 3
    with pytest.raises(ProfileError, match="unknown consent kind 'telemetry'"):
        consent.set("telemetry", True)


def test_closed_profile_is_a_clear_error(profile_dir: Path) -> None:
    p = Profile.open(profile_dir)
    p.close()
    with pytest.raises(ProfileError, match="the profile is closed"):
        p.store.create_conversation("x")


def test_threads_share_one_profile(profile: Profile) -> None:
    import threading

    cid = profile.store.create_conversation("threads")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                profile.store.append_message(cid, "user", f"t{n}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(m.content for m in profile.store.messages(cid)) == sorted(f"t{n}-{i}" for n in range(4) for i in range(25))


# -- hypothesis round trips ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_profile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Profile]:
    p = Profile.open(tmp_path_factory.mktemp("hyp") / "profile", passphrase="hypothesis")
    yield p
    p.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["user", "assistant", "system"]) | st.text(alphabet=string.ascii_letters, max_size=12)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=st.text(), content=st.text(), role=roles, meta=st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_any_message_round_trips(shared_profile: Profile, title: str, content: str, role: str, meta: dict[str, Any]) -> None:
    store = shared_profile.store
    cid = store.create_conversation(title)
    mid = store.append_message(cid, role, content, meta)
    got = store.message(mid)
    assert (got.role, got.content, got.meta, got.conversation_id) == (role, content, meta, cid)
    assert store.conversation(cid).title == title
    new = content[::-1] + "\u2603"
    store.update_message(mid, new, {"v": meta})
    assert store.messages(cid)[0].content == new and store.message(mid).meta == {"v": meta}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(min_size=0, max_size=40), value=json_values, data=st.binary(max_size=4096), name=st.text())
def test_any_setting_and_blob_round_trips(shared_profile: Profile, key: str, value: Any, data: bytes, name: str) -> None:
    store = shared_profile.store
    store.set_setting(key, value)
    assert store.get_setting(key) == value
    bid = store.put_blob("hypothesis", name, data)
    assert store.get_blob(bid) == data
    assert next(b for b in store.list_blobs("hypothesis") if b.id == bid).name == name


def test_large_text_round_trips(shared_profile: Profile) -> None:
    big = ("Große Daten, 大きなデータ, 🙂 — " * 40_000)[:1_000_000]
    cid = shared_profile.store.create_conversation("big")
    mid = shared_profile.store.append_message(cid, "user", big)
    assert shared_profile.store.message(mid).content == big
    blob = bytes(range(256)) * 20_000  # 5 MB
    assert shared_profile.store.get_blob(shared_profile.store.put_blob("dataset", "big.bin", blob)) == blob
