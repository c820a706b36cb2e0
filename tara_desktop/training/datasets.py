"""Training datasets: parse, validate (with line numbers), deduplicate, split, format.

Three formats are accepted:

- JSONL of chats, one per line: ``{"messages": [{"role": "user", "content": "..."}, ...]}``;
- JSONL of pairs: ``{"prompt": "...", "response": "..."}`` (turned into a user/assistant chat);
- plain text: paragraphs separated by blank lines, each one a training sample.

Every problem is reported as a :class:`DatasetError` naming the line and what to do. Nothing here
writes the data anywhere: imported datasets go into the encrypted profile (:func:`import_dataset`), and
a training job receives the bytes through a pipe.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tara_desktop.errors import TaraError

if TYPE_CHECKING:
    from tara_desktop.profile.profile import Profile

log = logging.getLogger(__name__)

DatasetFormat = Literal["auto", "jsonl", "text"]

MAX_LINE_BYTES = 1_000_000  # one sample longer than this is almost surely a broken file
MAX_FILE_BYTES = 512 * 1024 * 1024
ROLES = ("system", "user", "assistant")
DATASET_BLOB_KIND = "dataset"


class DatasetError(TaraError):
    """The dataset file cannot be used; the message names the line and the fix."""


@dataclass(frozen=True)
class Example:
    """One training sample: a chat (``messages``) or, for plain text, a single ``text``."""

    messages: tuple[tuple[str, str], ...] = ()
    text: str | None = None

    def key(self) -> str:
        """A stable identity used for deduplication and the train/validation split."""
        body = self.text if self.text is not None else json.dumps(self.messages, ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()

    def as_messages(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass
class PreparedDataset:
    """The deduplicated, capped and split dataset, plus counts a user wants to see."""

    train: list[Example]
    validation: list[Example]
    total_lines: int = 0
    duplicates: int = 0
    dropped_over_max: int = 0
    fingerprint: str = ""
    notes: list[str] = field(default_factory=list)


def _decode_lines(data: bytes) -> list[str]:
    if len(data) > MAX_FILE_BYTES:
        raise DatasetError(
            f"the dataset is {len(data) // (1024 * 1024)} MB, more than {MAX_FILE_BYTES // (1024 * 1024)} MB; "
            "split it or use fewer samples"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines: list[str] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise DatasetError(
                f"line {number}: {len(raw):,} bytes long, more than the {MAX_LINE_BYTES:,}-byte limit for one "
                "sample; check that the file has one sample per line"
            )
        try:
            lines.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError:
            raise DatasetError(
                f"line {number}: not valid UTF-8 text; save the file with UTF-8 encoding"
            ) from None
    return lines


def _chat_from_object(obj: object, number: int) -> Example:
    expected = "expected a JSON object with 'messages' or 'prompt'/'response'"
    if not isinstance(obj, dict):
        raise DatasetError(f"line {number}: {expected}, got {type(obj).__name__}")
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            raise DatasetError(f"line {number}: 'messages' must be a non-empty list of {{'role', 'content'}}")
        turns: list[tuple[str, str]] = []
        for i, m in enumerate(messages, start=1):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(
                m.get("content"), str
            ):
                raise DatasetError(
                    f"line {number}: message {i} must be an object with string 'role' and 'content'"
                )
            if m["role"] not in ROLES:
                raise DatasetError(
                    f"line {number}: message {i} has role {m['role']!r}; use one of {', '.join(ROLES)}"
                )
            turns.append((m["role"], m["content"]))
        if not any(r == "assistant" and c.strip() for r, c in turns):
            raise DatasetError(f"line {number}: the chat has no non-empty 'assistant' message to learn from")
        return Example(messages=tuple(turns))
    if "prompt" in obj or "response" in obj:
        prompt, response = obj.get("prompt"), obj.get("response")
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise DatasetError(f"line {number}: 'prompt' and 'response' must both be strings")
        if not response.strip():
            raise DatasetError(f"line {number}: 'response' is empty; give the answer the model should learn")
        return Example(messages=(("user", prompt), ("assistant", response)))
    keys = ", ".join(sorted(str(k) for k in obj)) or "none"
    raise DatasetError(f"line {number}: {expected} (found keys: {keys})")


def _parse_jsonl(lines: list[str]) -> list[Example]:
    out: list[Example] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                "each line must hold one JSON object"
            ) from None
        out.append(_chat_from_object(obj, number))
    return out


def _parse_text(lines: list[str]) -> list[Example]:
    out: list[Example] = []
    para: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            para.append(line)
        elif para:
            out.append(Example(text="\n".join(para)))
            para = []
    return out


def detect_format(data: bytes, name: str = "") -> Literal["jsonl", "text"]:
    """``jsonl`` for ``.jsonl``/``.json`` names or when the first non-blank line starts with ``{``."""
    suffix = Path(name).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".txt", ".md", ".text"):
        return "text"
    for raw in data.lstrip(b"\xef\xbb\xbf").splitlines():
        if raw.strip():
            return "jsonl" if raw.lstrip().startswith(b"{") else "text"
    return "text"


def parse_dataset(data: bytes, *, name: str = "", fmt: DatasetFormat = "auto") -> list[Example]:
    """Parse and validate every line; raise :class:`DatasetError` at the first bad one."""
    lines = _decode_lines(data)
    kind = detect_format(data, name) if fmt == "auto" else fmt
    examples = _parse_jsonl(lines) if kind == "jsonl" else _parse_text(lines)
    if not examples:
        raise DatasetError(
            "the dataset is empty; add one sample per line "
            '(e.g. {"prompt": "...", "response": "..."})'
        )
    return examples


def deduplicate(examples: Sequence[Example]) -> tuple[list[Example], int]:
    """Keep the first copy of each sample, in file order; return the kept list and the number dropped."""
    seen: set[str] = set()
    kept: list[Example] = []
    for ex in examples:
        k = ex.key()
        if k not in seen:
            seen.add(k)
            kept.append(ex)
    return kept, len(examples) - len(kept)


def split(
    examples: Sequence[Example], *, seed: int = 0, validation_fraction: float = 0.1
) -> tuple[list[Example], list[Example]]:
    """Deterministic train/validation split: a sample's side depends on its content and the seed, not
    on its position, so adding lines never moves an old sample across. At least one sample goes to each
    side when there are two or more."""
    if len(examples) < 2:
        raise DatasetError(
            f"the dataset has {len(examples)} unique sample(s); at least 2 are needed (one is held out "
            "for validation)"
        )
    ranked = sorted(
        examples, key=lambda ex: hashlib.sha256(f"{seed}:{ex.key()}".encode()).hexdigest()
    )
    n_val = min(len(examples) - 1, max(1, round(len(examples) * validation_fraction)))
    val_keys = {ex.key() for ex in ranked[:n_val]}
    train = [ex for ex in examples if ex.key() not in val_keys]
    val = [ex for ex in examples if ex.key() in val_keys]
    return train, val


def prepare(
    data: bytes,
    *,
    name: str = "",
    fmt: DatasetFormat = "auto",
    max_samples: int = 2000,
    seed: int = 0,
    validation_fraction: float = 0.1,
) -> PreparedDataset:
    """Parse, validate, deduplicate, cap at ``max_samples`` (the first unique ones) and split."""
    examples = parse_dataset(data, name=name, fmt=fmt)
    total = len(examples)
    unique, dupes = deduplicate(examples)
    dropped = max(0, len(unique) - max_samples)
    unique = unique[:max_samples]
    train, val = split(unique, seed=seed, validation_fraction=validation_fraction)
    notes = []
    if dupes:
        notes.append(f"{dupes} duplicate sample(s) skipped")
    if dropped:
        notes.append(f"{dropped} sample(s) over the limit of {max_samples} not used")
    return PreparedDataset(
        train=train,
        validation=val,
        total_lines=total,
        duplicates=dupes,
        dropped_over_max=dropped,
        fingerprint=hashlib.sha256(data).hexdigest(),
        notes=notes,
    )


def read_dataset_file(path: str | Path) -> bytes:
    """Read a dataset file the user picked, with a clear error when it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"dataset {p} not found; check the path")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise DatasetError(f"dataset {p} cannot be read ({exc.strerror}); check its permissions") from None


# ---------------------------------------------------------------------------------------------------
# Formatting through the base model's tokenizer and chat template


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # -100 where the model is not trained to predict (prompt tokens)


def _fallback_chat(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    parts = [f"{m['role'].capitalize()}: {m['content']}\n" for m in messages]
    if add_generation_prompt:
        parts.append("Assistant:")
    return "".join(parts)


def render_chat(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool = False) -> str:
    """The chat as text, through the tokenizer's chat template (a plain ``Role: text`` layout without one)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return str(text)
    return _fallback_chat(messages, add_generation_prompt)


def encode_example(tokenizer: Any, example: Example, *, max_length: int = 256) -> Encoded:
    """Token ids and labels: the model learns the last assistant answer (and, for plain text, all of it)."""
    eos = tokenizer.eos_token_id
    if example.text is not None:
        ids = list(tokenizer(example.text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            ids.append(int(eos))
        ids = ids[:max_length]
        return Encoded(ids, list(ids))
    messages = example.as_messages()
    last_assistant = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    messages = messages[: last_assistant + 1]
    prompt_text = render_chat(tokenizer, messages[:-1], add_generation_prompt=True)
    full_text = render_chat(tokenizer, messages)
    if not getattr(tokenizer, "chat_template", None) and eos is not None and tokenizer.eos_token:
        full_text += tokenizer.eos_token
    prompt_ids = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    full_ids = list(tokenizer(full_text, add_special_tokens=False)["input_ids"])
    n_prompt = len(prompt_ids) if full_ids[: len(prompt_ids)] == prompt_ids else 0
    if len(full_ids) > max_length:
        # Keep the answer: cut the start of the prompt first.
        cut = len(full_ids) - max_length
        full_ids = full_ids[cut:]
        n_prompt = max(0, n_prompt - cut)
    labels = [-100] * n_prompt + full_ids[n_prompt:]
    return Encoded(full_ids, labels)


# ---------------------------------------------------------------------------------------------------
# Encrypted storage in the profile


def import_dataset(profile: Profile, name: str, data: bytes, *, fmt: DatasetFormat = "auto") -> int:
    """Validate ``data`` and store it encrypted in the profile; return the blob id for a training spec."""
    examples = parse_dataset(data, name=name, fmt=fmt)
    blob_id = int(profile.store.put_blob(DATASET_BLOB_KIND, name, data))
    log.info("imported a dataset with %d samples as blob %d", len(examples), blob_id)
    return blob_id


def load_dataset_blob(profile: Profile, blob_id: int) -> bytes:
    return bytes(profile.store.get_blob(blob_id))
