"""``tara gguf repair``: write a valid copy of a GGUF file whose damage is confined to metadata.

Repairable: a metadata string that is not UTF-8 (bad bytes become U+FFFD), a chat template that does not
parse (removed, so the engine's default template is used), a key that appears twice (the first copy is
kept), a key whose name is not UTF-8 (dropped), and a wrong ``general.alignment`` when the tensor layout
shows the real one. Anything else (a truncated file, a corrupt tensor table, bad tensor types...) means
the tensor data cannot be trusted: the file must be downloaded again or re-exported.

The copy is written to a temporary file beside ``out`` (:func:`tara_desktop.files.atomic_file`), validated,
and only then moved into place, so an interrupted repair leaves nothing at ``out`` and the original file is never touched.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tara_desktop.errors import TaraError
from tara_desktop.files import atomic_file
from tara_desktop.jobs import JobState
from tara_desktop.llm import gguf_file
from tara_desktop.llm.gguf_checks import chat_template_problem
from tara_desktop.llm.gguf_info import GgufInfo
from tara_desktop.llm.gguf_reader import InvalidGguf, ValueType

log = logging.getLogger(__name__)

_COPY_CHUNK = 4 << 20


@dataclass
class RepairReport:
    out: Path
    fixes: list[str] = field(default_factory=list)


def _string(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def _kv_string(key: str, value: str) -> bytes:
    return _string(key) + struct.pack("<I", ValueType.STRING) + _string(value)


def _kv_u32(key: str, value: int) -> bytes:
    return _string(key) + struct.pack("<II", ValueType.UINT32, value)


def _pad(x: int, n: int) -> int:
    return x + (-x % n)


def plan_metadata(info: GgufInfo, src: BinaryIO) -> tuple[list[bytes], list[str]]:
    """The metadata entries of the repaired file (encoded) and a sentence per fix."""
    kinds = {(p.kind, p.key) for p in info.problems}
    fixes: list[str] = []
    entries: list[bytes] = []
    seen: set[str] = set()
    for entry in info.kv_entries:
        key = entry.key
        if not entry.key_ok:
            fixes.append(f"dropped metadata entry {key} whose name was not UTF-8 text")
            continue
        if key in seen:
            fixes.append(f"dropped the second copy of metadata key {key}")
            continue
        seen.add(key)
        if key == "general.alignment" and ("alignment", key) in kinds:
            entries.append(_kv_u32(key, info.alignment))
            fixes.append(f"set general.alignment to {info.alignment}, the alignment the tensor data is laid out with")
            continue
        if key == "tokenizer.chat_template" and ("chat_template", key) in kinds:
            fixes.append("removed the chat template, which did not parse (TARA uses a default template instead)")
            continue
        if ("bad_utf8_value", key) in kinds:
            value = info.metadata.get(key)
            if key == "tokenizer.chat_template" and isinstance(value, str) and chat_template_problem(value):
                value = None
            if isinstance(value, str):
                entries.append(_kv_string(key, value))
                fixes.append(f"replaced the bytes of {key} that were not UTF-8 text")
            else:
                fixes.append(f"dropped metadata key {key}, whose value was not UTF-8 text")
            continue
        src.seek(entry.start)
        raw = src.read(entry.end - entry.start)
        if len(raw) != entry.end - entry.start:
            raise InvalidGguf(f"{info.path} changed while it was being repaired: try again")
        entries.append(raw)
    if ("alignment", "general.alignment") in kinds and "general.alignment" not in seen:
        entries.append(_kv_u32("general.alignment", info.alignment))
        fixes.append(f"added general.alignment = {info.alignment}, the alignment the tensor data is laid out with")
    return entries, fixes


def repair(src: Path, out: Path, *, state: JobState | None = None) -> RepairReport:
    """Write a valid copy of ``src`` at ``out`` when its damage is in metadata only."""
    state = state or JobState()
    try:
        info = gguf_file.inspect(src)
    except InvalidGguf as exc:
        raise InvalidGguf(f"the damage is not in metadata only, so it cannot be repaired: {exc}") from None
    if not info.problems:
        raise TaraError(f"{src} is a valid GGUF file with nothing to repair: use it as it is")
    out = Path(out)
    if out.exists() and out.resolve() == src.resolve():
        raise TaraError("the repaired copy must go to a new file, not over the damaged one: give another OUT path")
    if out.is_dir():
        raise TaraError(f"{out} is a folder: give the path of the .gguf file to write")
    if not out.parent.is_dir():
        raise TaraError(f"the folder {out.parent} does not exist: create it or choose another OUT path")

    alignment = info.alignment
    total = sum(t.n_bytes for t in info.tensors) or 1
    with atomic_file(out) as tmp:
        with open(src, "rb") as f, open(tmp, "wb") as w:
            entries, fixes = plan_metadata(info, f)
            w.write(b"GGUF" + struct.pack("<IQQ", 3, len(info.tensors), len(entries)))
            for raw in entries:
                w.write(raw)
            offset = 0
            for t in info.tensors:
                w.write(_string(t.name) + struct.pack("<I", len(t.shape)))
                w.write(struct.pack(f"<{len(t.shape)}Q", *t.shape))
                w.write(struct.pack("<IQ", t.type_id, offset))
                offset += _pad(t.n_bytes, alignment)
            w.write(b"\0" * (-w.tell() % alignment))
            done = 0
            for t in info.tensors:
                f.seek(t.offset)
                left = t.n_bytes
                while left:
                    state.check()
                    chunk = f.read(min(left, _COPY_CHUNK))
                    if not chunk:
                        raise InvalidGguf(f"{src} changed while it was being repaired: try again")
                    w.write(chunk)
                    left -= len(chunk)
                    done += len(chunk)
                    state.report(done / total, "copying tensor data")
                w.write(b"\0" * (-t.n_bytes % alignment))
        fixed = gguf_file.validate(tmp)
        if fixed.tensor_count != info.tensor_count:  # pragma: no cover - guarded by construction
            raise InvalidGguf("the repaired copy lost tensors: the file cannot be repaired, download it again")
    log.info("repaired a GGUF file: %d fixes", len(fixes))
    return RepairReport(out=out, fixes=fixes)
