"""Parsing a GGUF header without trusting it: magic and version, the metadata pairs, the tensor table and
the layout of the tensor data, each step checked the way llama.cpp's loader (``gguf.cpp``) checks it.

The bytes are read by :class:`tara_desktop.llm.gguf_reader.Reader` (every length and count checked against
the bytes left in the file); the result is a :class:`tara_desktop.llm.gguf_info.GgufInfo`. Damage confined
to metadata is recorded in its ``problems``; anything else raises :class:`InvalidGguf`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, NamedTuple

from tara_desktop.llm.gguf_checks import chat_template_problem, check_hparams, check_tokenizer
from tara_desktop.llm.gguf_info import GgufInfo, KvEntry, TensorInfo, describe, ggml_types
from tara_desktop.llm.gguf_reader import (
    DEFAULT_ALIGNMENT,
    MAGIC,
    MAX_DIMS,
    MAX_KEY_BYTES,
    MAX_KVS,
    MAX_NAME_BYTES,
    MAX_TENSORS,
    REDOWNLOAD,
    InvalidGguf,
    MetadataProblem,
    MetadataValue,
    Reader,
    ValueType,
    not_gguf_message,
    read_value,
)


class _RawTensor(NamedTuple):
    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int  # relative to the start of the tensor data
    n_bytes: int
    n_elements: int


class _Metadata(NamedTuple):
    values: dict[str, MetadataValue]
    entries: list[KvEntry]
    value_types: dict[str, int]


def open_gguf(path: Path) -> tuple[BinaryIO, int]:
    """The open file and its size; InvalidGguf for a folder, a pipe or a device, or a file that cannot be read."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise InvalidGguf(f"{path} is a folder, not a GGUF file: give the path of a .gguf file")
        if not stat.S_ISREG(mode):  # a pipe or a device could block or never end
            raise InvalidGguf(f"{path} is not a regular file: give the path of a .gguf file")
        f = open(path, "rb")
    except FileNotFoundError:
        raise InvalidGguf(f"{path} does not exist: check the path") from None
    except PermissionError:
        raise InvalidGguf(f"{path} cannot be read (permission denied): check the file's permissions") from None
    except OSError as exc:
        raise InvalidGguf(f"{path} cannot be read ({exc.strerror or exc}): check the path") from None
    try:
        size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        f.close()
        raise InvalidGguf(f"{path} cannot be read ({exc.strerror or exc}): check the path") from None
    return f, size


def _pad(x: int, n: int) -> int:
    return x + (-x % n)


def _derive_alignment(header_end: int, raw: list[_RawTensor], size: int) -> tuple[int, int] | None:
    """Find the alignment the tensor data was really laid out with, when ``general.alignment`` is wrong.

    A candidate must reproduce every offset as the running padded sum (as llama.cpp requires) and make the
    data end exactly at the end of the file, so the data start it implies is the true one. Returns
    (alignment, data start) or None when no single layout fits.
    """
    fits: dict[int, int] = {}  # data start -> largest alignment giving it
    for shift in range(17):
        a = 1 << shift
        pos = 0
        ok = True
        for t in raw:
            if t.offset != pos:
                ok = False
                break
            pos += _pad(t.n_bytes, a)
        start = _pad(header_end, a)
        if ok and start + pos == size:
            fits[start] = a
    if len(fits) != 1:
        return None
    start, a = next(iter(fits.items()))
    return a, start


def _read_start(r: Reader, size: int) -> tuple[int, int, int]:
    """Magic, version and the two counts: (version, tensor count, metadata count)."""
    head = r.read(min(size, 256), "the magic bytes")
    r.pos = 0
    if size < 4 or head[:4] != MAGIC:
        raise InvalidGguf(not_gguf_message(head, size))
    r.skip(4, "the magic bytes")
    version = r.u32("the GGUF version")
    if version & 0xFFFF == 0 and version != 0:
        raise InvalidGguf(
            "the file is a big-endian GGUF (made for IBM mainframes), which this computer cannot load: "
            "download the little-endian file"
        )
    if version == 1:
        raise InvalidGguf(
            "the file uses GGUF version 1, which llama.cpp no longer reads: download a newer conversion of the model"
        )
    if version not in (2, 3):
        raise InvalidGguf(
            f"the file says it is GGUF version {version}; only versions 2 and 3 exist: "
            f"the header is corrupt, {REDOWNLOAD}"
        )
    n_tensors = r.u64("the tensor count")
    n_kv = r.u64("the metadata count")
    # each tensor description takes at least 8 (name length) + 4 (dims) + 8 (one dim) + 4 (type) + 8 bytes
    if n_tensors > MAX_TENSORS or n_tensors * 32 > r.remaining():
        raise InvalidGguf(
            f"the header claims {n_tensors} tensors, more than a file of {size} bytes can hold: "
            f"the file is truncated or its header is corrupt, {REDOWNLOAD}"
        )
    # each metadata pair takes at least 8 (key length) + 4 (type) + 1 (a one-byte value)
    if n_kv > MAX_KVS or n_kv * 13 > r.remaining():
        raise InvalidGguf(
            f"the header claims {n_kv} metadata entries, more than a file of {size} bytes can hold: "
            f"the file is truncated or its header is corrupt, {REDOWNLOAD}"
        )
    return version, n_tensors, n_kv


def _read_metadata(r: Reader, n_kv: int, problems: list[MetadataProblem]) -> _Metadata:
    metadata: dict[str, MetadataValue] = {}
    entries: list[KvEntry] = []
    value_types: dict[str, int] = {}
    for i in range(n_kv):
        start = r.pos
        key, key_ok = r.short_string(f"metadata key {i}", MAX_KEY_BYTES)
        if key_ok and not key.isprintable():
            key_ok = False  # control characters (a newline...) in a key: as unusable as bad UTF-8
        label = key if key_ok else f"#{i}"
        if not key_ok:
            problems.append(
                MetadataProblem("bad_utf8_key", label, f"metadata key {i} ({key[:80]!r}) is not valid UTF-8 text")
            )
        vtype = r.u32(f"the value type of metadata key {label}")
        value = read_value(r, vtype, label, problems)
        entries.append(KvEntry(label, key_ok, vtype, start, r.pos))
        if key_ok:
            if key in metadata:
                problems.append(
                    MetadataProblem("duplicate_key", key, f"metadata key {key} appears more than once")
                )
                continue
            metadata[key] = value
            value_types[key] = vtype
    return _Metadata(metadata, entries, value_types)


def _claimed_alignment(meta: _Metadata) -> tuple[int, str | None]:
    """The alignment ``general.alignment`` gives (32 without it), and what is wrong with it, if anything."""
    if "general.alignment" not in meta.values:
        return DEFAULT_ALIGNMENT, None
    a = meta.values["general.alignment"]
    if meta.value_types["general.alignment"] != ValueType.UINT32 or not isinstance(a, int):
        return DEFAULT_ALIGNMENT, "general.alignment is not stored as a uint32 (llama.cpp would abort)"
    if a == 0 or a & (a - 1) or a > 1 << 16:
        return DEFAULT_ALIGNMENT, f"general.alignment is {a}, not a power of two up to 65536"
    return int(a), None


def _read_tensor(r: Reader, i: int, size: int, names: set[str]) -> _RawTensor:
    types = ggml_types()
    name, name_ok = r.short_string(f"the name of tensor {i}", MAX_NAME_BYTES)
    if not name_ok or not name.isprintable():
        raise InvalidGguf(
            f"the name of tensor {i} is not printable UTF-8 text: the header is corrupt, {REDOWNLOAD}"
        )
    if name in names:
        raise InvalidGguf(f"tensor {name} appears twice in the file: the header is corrupt, {REDOWNLOAD}")
    names.add(name)
    n_dims = r.u32(f"the number of dimensions of tensor {name}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise InvalidGguf(
            f"tensor {name} has {n_dims} dimensions (llama.cpp allows 1 to {MAX_DIMS}): "
            f"the header is corrupt, {REDOWNLOAD}"
        )
    shape = tuple(r.u64(f"the shape of tensor {name}") for _ in range(n_dims))
    n_elements = 1
    for d in shape:
        n_elements *= d
    if any(d == 0 for d in shape) or n_elements >= 1 << 63:
        raise InvalidGguf(
            f"tensor {name} has an impossible shape {list(shape)}: the header is corrupt, {REDOWNLOAD}"
        )
    type_id = r.u32(f"the type of tensor {name}")
    if type_id not in types:
        raise InvalidGguf(
            f"tensor {name} has unknown data type {type_id}: the header is corrupt or the file needs a "
            f"newer TARA; {REDOWNLOAD}"
        )
    type_name, block, block_bytes = types[type_id]
    if shape[0] % block:
        raise InvalidGguf(
            f"tensor {name} of type {type_name} has rows of {shape[0]} values, not a multiple of its block "
            f"size {block}: the header is corrupt, {REDOWNLOAD}"
        )
    n_bytes = n_elements // block * block_bytes
    if n_bytes > size:
        raise InvalidGguf(
            f"tensor {name} needs {n_bytes} bytes but the whole file has {size} bytes: "
            f"the header is corrupt or the file is truncated, {REDOWNLOAD}"
        )
    offset = r.u64(f"the data offset of tensor {name}")
    return _RawTensor(name, shape, type_id, offset, n_bytes, n_elements)


def _data_layout(
    header_end: int, raw: list[_RawTensor], size: int, meta: _Metadata, problems: list[MetadataProblem]
) -> tuple[int, int, int | None]:
    """(alignment, data start, derived alignment or None): the claimed alignment when the tensors are laid
    out with it, else the one they really use (a repairable metadata problem) when a single one fits."""
    alignment, alignment_problem = _claimed_alignment(meta)
    data_offset = _pad(header_end, alignment)
    if alignment_problem is None and not any(t.offset % alignment for t in raw):
        return alignment, data_offset, None
    found = _derive_alignment(header_end, raw, size)
    if found is None:
        if alignment_problem is not None:
            raise InvalidGguf(
                f"{alignment_problem} and the real alignment cannot be worked out: the file is corrupt, {REDOWNLOAD}"
            )
        return alignment, data_offset, None
    derived, data_offset = found
    claimed = meta.values.get("general.alignment")
    problems.append(
        MetadataProblem(
            "alignment",
            "general.alignment",
            alignment_problem
            or (
                f"general.alignment is {claimed} but the tensor data is laid out with alignment {derived}"
                if claimed is not None
                else f"general.alignment is missing (so 32) but the tensor data is laid out with alignment {derived}"
            ),
        )
    )
    return derived, data_offset, derived


def _place_tensors(raw: list[_RawTensor], alignment: int, data_offset: int, size: int) -> list[TensorInfo]:
    """Every tensor at an aligned offset, in order, and wholly inside the file."""
    if data_offset > size and raw:
        raise InvalidGguf(
            f"the tensor data should start at byte {data_offset} but the file has {size} bytes: "
            f"the file is truncated, {REDOWNLOAD}"
        )
    types = ggml_types()
    tensors: list[TensorInfo] = []
    expected = 0
    for name, shape, type_id, offset, n_bytes, n_elements in raw:
        if offset % alignment:
            raise InvalidGguf(
                f"tensor {name} data offset {offset} is not a multiple of the alignment {alignment}: "
                f"the header is corrupt, {REDOWNLOAD}"
            )
        start = data_offset + offset
        end = start + n_bytes
        if start >= size:
            raise InvalidGguf(
                f"tensor {name} starts at byte {start}, beyond the end of the file ({size} bytes): "
                f"the file is truncated or its header is corrupt, {REDOWNLOAD}"
            )
        if end > size:
            raise InvalidGguf(
                f"tensor {name} ends at byte {end} but the file has {size} bytes: "
                f"the file is truncated, download it again"
            )
        if offset != expected:
            raise InvalidGguf(
                f"tensor {name} data offset {offset} does not follow the tensor before it (expected {expected}): "
                f"the header is corrupt, {REDOWNLOAD}"
            )
        expected = offset + _pad(n_bytes, alignment)
        tensors.append(TensorInfo(name, shape, type_id, types[type_id][0], start, n_bytes, n_elements))
    return tensors


def _check_template(metadata: dict[str, MetadataValue], problems: list[MetadataProblem]) -> None:
    template = metadata.get("tokenizer.chat_template")
    if isinstance(template, str) and not any(p.key == "tokenizer.chat_template" for p in problems):
        why = chat_template_problem(template)
        if why is not None:
            problems.append(
                MetadataProblem(
                    "chat_template", "tokenizer.chat_template", f"the chat template does not parse ({why})"
                )
            )


def parse(path: Path, f: BinaryIO, size: int) -> GgufInfo:
    """The header of the open file ``f`` (of ``size`` bytes). Raises InvalidGguf, or
    :class:`~tara_desktop.llm.gguf_reader.Cut` when the file ends inside the header."""
    r = Reader(f, size)
    version, n_tensors, n_kv = _read_start(r, size)
    problems: list[MetadataProblem] = []
    meta = _read_metadata(r, n_kv, problems)
    names: set[str] = set()
    raw = [_read_tensor(r, i, size, names) for i in range(n_tensors)]
    header_end = r.pos
    alignment, data_offset, derived = _data_layout(header_end, raw, size, meta, problems)
    tensors = _place_tensors(raw, alignment, data_offset, size)
    check_tokenizer(meta.values)
    if meta.values.get("general.type", "model") != "adapter":
        check_hparams(meta.values)
    _check_template(meta.values, problems)
    return describe(
        path, size, version=version, alignment=alignment, data_offset=data_offset, header_end=header_end,
        metadata=meta.values, entries=meta.entries, tensors=tensors, problems=problems, derived=derived,
    )


__all__ = ["open_gguf", "parse"]
