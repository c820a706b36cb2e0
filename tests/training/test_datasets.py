"""Dataset parsing, validation (with line numbers), deduplication, split and formatting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tara_desktop.errors import TaraError
from tara_desktop.training import datasets as ds


def _jsonl(*rows: object) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode("utf-8")


GOOD = {"prompt": "Hi", "response": "Hello there."}


def test_parses_chats_pairs_and_text() -> None:
    chats = ds.parse_dataset(_jsonl(
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello."}]},
        GOOD,
    ))
    assert chats[0].messages == (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello."))
    assert chats[1].messages == (("user", "Hi"), ("assistant", "Hello there."))
    text = ds.parse_dataset(b"First paragraph\nstill first.\n\n\nSecond one.\n", name="notes.txt")
    assert [e.text for e in text] == ["First paragraph\nstill first.", "Second one."]
    # Auto-detection without a name: JSON objects -> jsonl, anything else -> text.
    assert ds.detect_format(_jsonl(GOOD)) == "jsonl"
    assert ds.detect_format(b"just words\n") == "text"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "the dataset is empty"),
        (b"\n  \n\n", "the dataset is empty"),
        (_jsonl(GOOD, GOOD, {"question": "x", "answer": "y"}),
         "line 3: expected a JSON object with 'messages' or 'prompt'/'response' (found keys: answer, question)"),
        (_jsonl(GOOD, '{"prompt": "a", "response": '), "line 2: not valid JSON"),
        (_jsonl(GOOD, "[1, 2]"), "line 2: expected a JSON object with 'messages' or 'prompt'/'response', got list"),
        (_jsonl(GOOD, {"prompt": "a", "response": 3}), "line 2: 'prompt' and 'response' must both be strings"),
        (_jsonl({"messages": [{"role": "robot", "content": "x"}]}), "line 1: message 1 has role 'robot'"),
        (_jsonl({"messages": [{"role": "user", "content": "x"}]}), "line 1: the chat has no non-empty 'assistant'"),
        (_jsonl({"messages": []}), "line 1: 'messages' must be a non-empty list"),
        (_jsonl(GOOD, GOOD, GOOD, GOOD)[:-1] + b"\n" + b'{"prompt": "caf\xe9", "response": "x"}\n',
         "line 5: not valid UTF-8 text"),
    ],
)
def test_bad_datasets_name_the_line(data: bytes, expected: str) -> None:
    with pytest.raises(TaraError) as err:
        ds.parse_dataset(data, name="data.jsonl")
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_a_50_mb_line_is_refused_with_its_line_number() -> None:
    huge = b'{"prompt": "' + b"a" * (50 * 1024 * 1024) + b'", "response": "x"}'
    data = _jsonl(GOOD, GOOD) + huge + b"\n"
    with pytest.raises(ds.DatasetError, match=r"^line 3: 52,428,8\d\d bytes long, more than the 1,000,000-byte limit"):
        ds.parse_dataset(data, name="big.jsonl")


def test_utf8_bom_and_crlf_are_accepted() -> None:
    data = b"\xef\xbb\xbf" + _jsonl(GOOD).replace(b"\n", b"\r\n")
    assert ds.parse_dataset(data)[0].messages[1] == ("assistant", "Hello there.")


def test_deduplication_keeps_the_first_copy_in_order() -> None:
    rows = [{"prompt": f"q{i % 5}", "response": f"a{i % 5}"} for i in range(12)]
    examples = ds.parse_dataset(_jsonl(*rows))
    kept, dropped = ds.deduplicate(examples)
    assert dropped == 7
    assert [e.messages[0][1] for e in kept] == ["q0", "q1", "q2", "q3", "q4"]


def test_split_is_deterministic_content_based_and_disjoint() -> None:
    rows = [{"prompt": f"question {i}", "response": f"answer {i}"} for i in range(50)]
    examples = ds.parse_dataset(_jsonl(*rows))
    train, val = ds.split(examples, seed=0)
    train2, val2 = ds.split(list(reversed(examples)), seed=0)
    assert len(val) == 5 and len(train) == 45
    assert {e.key() for e in val} == {e.key() for e in val2}
    assert {e.key() for e in train} == {e.key() for e in train2}
    assert not {e.key() for e in train} & {e.key() for e in val}
    # Adding samples never moves an old one across the split.
    more = ds.parse_dataset(_jsonl(*rows, *[{"prompt": f"new {i}", "response": "x"} for i in range(10)]))
    _, val3 = ds.split(more, seed=0)
    old_keys = {e.key() for e in examples}
    assert {e.key() for e in val3} & old_keys <= {e.key() for e in val}
    # Another seed gives another split.
    _, val_other = ds.split(examples, seed=1)
    assert {e.key() for e in val_other} != {e.key() for e in val}


def test_prepare_caps_at_max_samples_and_counts() -> None:
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(30)] + [GOOD, GOOD]
    prepared = ds.prepare(_jsonl(*rows), max_samples=20, seed=0)
    assert len(prepared.train) + len(prepared.validation) == 20
    assert prepared.total_lines == 32 and prepared.duplicates == 1 and prepared.dropped_over_max == 11
    assert any("duplicate" in n for n in prepared.notes)
    with pytest.raises(ds.DatasetError, match="at least 2 are needed"):
        ds.prepare(_jsonl(GOOD, GOOD))


def test_read_dataset_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ds.DatasetError, match="not found"):
        ds.read_dataset_file(tmp_path / "missing.jsonl")
    with pytest.raises(ds.DatasetError, match="not found"):
        ds.read_dataset_file(tmp_path)


def test_encoding_uses_the_chat_template_and_masks_the_prompt(tiny_base: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    ex = ds.parse_dataset(_jsonl({"prompt": "What colour is the car?", "response": "The car is red."}))[0]
    enc = ds.encode_example(tok, ex, max_length=256)
    text = tok.decode(enc.input_ids)
    assert text == "<|im_start|>user\nWhat colour is the car?<|im_end|>\n<|im_start|>assistant\nThe car is red.<|im_end|>\n"
    learned = tok.decode([t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != -100])
    assert learned == "The car is red.<|im_end|>\n"
    # Truncation keeps the answer and cuts the prompt's start.
    short = ds.encode_example(tok, ex, max_length=12)
    assert len(short.input_ids) == 12
    assert tok.decode([t for t, lab in zip(short.input_ids, short.labels, strict=True) if lab != -100]).startswith("The car")


def test_imported_datasets_are_stored_encrypted_in_the_profile(tmp_path: Path) -> None:
    from tara_desktop.profile import Profile
    from tara_desktop.training.spec import TrainingSpec
    from tara_desktop.training.supervisor import load_data

    data = _jsonl({"prompt": "my secret symptom xylophone", "response": "see a doctor"}, GOOD)
    profile = Profile.open(tmp_path / "profile", passphrase="correct horse")
    try:
        blob_id = ds.import_dataset(profile, "health.jsonl", data)
        spec = TrainingSpec(domain="healthcare", base="b", out_dir=str(tmp_path / "job"), data_blob_id=blob_id,
                            data_name="health.jsonl", threads=1)
        assert load_data(spec, profile) == data
        with pytest.raises(ds.DatasetError, match="line 1: not valid JSON"):
            ds.import_dataset(profile, "bad.jsonl", b"{nope\n")
    finally:
        profile.close()
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "profile").rglob("*") if p.is_file())
    assert b"xylophone" not in on_disk
