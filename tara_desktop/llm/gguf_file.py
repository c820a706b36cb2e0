"""Inspect and validate GGUF model files without trusting them.

A GGUF file is a header (magic, version, counts), metadata key/value pairs, tensor descriptions,
then the aligned tensor data. This module reads the header with its own bounded, streaming parser
(``gguf.GGUFReader`` memory-maps the file and trusts the counts it finds), so a truncated, bit-flipped or
hostile file gives one clear :class:`InvalidGguf` line and never a crash, a huge allocation or a hang:
every count and length is checked against the bytes actually left in the file before anything is read,
and every loop is bounded by the file size.

The checks mirror what llama.cpp's loader demands (``gguf.cpp``), so a file that passes here loads there:
version 2 or 3, little-endian, no duplicate keys or tensor names, no nested arrays, ``general.alignment``
a power of two stored as uint32, tensor names shorter than 64 bytes, 1..4 positive dimensions, a known
tensor type whose block size divides the row, tensors laid out in order at aligned offsets, and all of the
data inside the file.

Damage confined to metadata (a string that is not UTF-8, a chat template that does not parse, a duplicate
key, a wrong ``general.alignment``) is recorded in :attr:`GgufInfo.problems` by :func:`inspect`, and raised by
:func:`validate`; :mod:`tara_desktop.llm.gguf_repair` can write a fixed copy of such a file.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import struct
from collections import Counter
from dataclasses import dataclass, replace
from enum import IntEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from tara_desktop.errors import TaraError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_NAME_BYTES = 63  # llama.cpp: GGML_MAX_NAME = 64 including the terminating NUL
MAX_DIMS = 4
MAX_TENSORS = 200_000  # far above any real model; keeps memory bounded on hostile counts
MAX_KVS = 100_000
KEEP_STRING_BYTES = 4 << 20  # metadata strings up to this size are kept in GgufInfo.metadata
KEEP_ARRAY_ITEMS = 4096  # numeric arrays up to this many items are kept (per-layer head counts ...)
KEEP_STRING_ITEMS = 256
_CHUNK = 1 << 20

REDOWNLOAD = "download it again or re-export it"


class InvalidGguf(TaraError):
    """The file is not a GGUF model llama.cpp can load. The message names the problem and the fix."""


class ValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


SCALAR_FORMATS: dict[int, str] = {
    ValueType.UINT8: "B",
    ValueType.INT8: "b",
    ValueType.UINT16: "H",
    ValueType.INT16: "h",
    ValueType.UINT32: "I",
    ValueType.INT32: "i",
    ValueType.FLOAT32: "f",
    ValueType.BOOL: "B",
    ValueType.UINT64: "Q",
    ValueType.INT64: "q",
    ValueType.FLOAT64: "d",
}


@lru_cache(maxsize=1)
def ggml_types() -> dict[int, tuple[str, int, int]]:
    """ggml tensor type id -> (name, block size, bytes per block), from the ``gguf`` package."""
    from gguf import GGML_QUANT_SIZES

    return {int(t): (t.name, blk, size) for t, (blk, size) in GGML_QUANT_SIZES.items()}


@lru_cache(maxsize=1)
def file_type_names() -> dict[int, str]:
    from gguf import LlamaFileType

    out = {}
    for ft in LlamaFileType:
        name = ft.name.removeprefix("MOSTLY_").removeprefix("ALL_")
        out[int(ft)] = name
    return out


@dataclass(frozen=True, slots=True)
class ArrayValue:
    """A metadata array: its item type, length and (when small) its items."""

    item_type: int
    count: int
    items: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_id: int
    type_name: str
    offset: int  # absolute byte offset of the data in the file
    n_bytes: int
    n_elements: int


@dataclass(frozen=True, slots=True)
class MetadataProblem:
    """Damage limited to metadata: ``tara gguf repair`` can write a fixed copy."""

    kind: str  # "bad_utf8_key" | "bad_utf8_value" | "duplicate_key" | "alignment" | "chat_template"
    key: str
    message: str


@dataclass(frozen=True, slots=True)
class KvEntry:
    """Where one metadata pair sits in the file (used by repair to copy it verbatim)."""

    key: str
    key_ok: bool
    value_type: int
    start: int
    end: int


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    size_bytes: int
    version: int
    alignment: int
    data_offset: int
    architecture: str | None
    model_type: str  # "model" or "adapter" (general.type)
    name: str | None
    parameter_count: int
    file_type: str | None
    dominant_type: str | None
    context_length: int | None
    chat_template: bool
    tokenizer_model: str | None
    vocab_size: int | None
    n_layers: int | None
    n_embd: int | None
    n_head: int | None
    n_head_kv: int | None
    head_dim_k: int | None
    head_dim_v: int | None
    tensor_count: int
    tensor_types: dict[str, int]  # type name -> number of tensors
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, Any]
    kv_entries: tuple[KvEntry, ...] = ()
    header_end: int = 0
    problems: tuple[MetadataProblem, ...] = ()
    sha256: str | None = None
    derived_alignment: int | None = None  # the layout's real alignment when general.alignment is wrong

    @property
    def quantization(self) -> str:
        """The file type when the file says it, else the type holding most of the bytes."""
        return self.file_type or self.dominant_type or "unknown"

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """Bytes of an f16 KV cache for ``n_ctx`` tokens (0 when the metadata lacks the shape)."""
        if not self.n_layers or not self.n_head_kv:
            return 0
        k = self.head_dim_k or 0
        v = self.head_dim_v or 0
        if not k or not v:
            if not self.n_embd or not self.n_head:
                return 0
            k = k or self.n_embd // self.n_head
            v = v or self.n_embd // self.n_head
        return self.n_layers * n_ctx * self.n_head_kv * (k + v) * 2

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description (``tara gguf info --json``)."""
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "version": self.version,
            "type": self.model_type,
            "architecture": self.architecture,
            "name": self.name,
            "parameters": self.parameter_count,
            "quantization": self.quantization,
            "context_length": self.context_length,
            "chat_template": self.chat_template,
            "tokenizer": self.tokenizer_model,
            "vocab_size": self.vocab_size,
            "n_layers": self.n_layers,
            "n_embd": self.n_embd,
            "n_head": self.n_head,
            "n_head_kv": self.n_head_kv,
            "alignment": self.alignment,
            "tensor_count": self.tensor_count,
            "tensor_types": dict(self.tensor_types),
            "problems": [p.message for p in self.problems],
            "sha256": self.sha256,
        }


class _Cut(Exception):
    """The file ended while reading ``what``."""

    def __init__(self, what: str, pos: int) -> None:
        super().__init__(what)
        self.what = what
        self.pos = pos


class _Reader:
    """Bounded little-endian reads over a file, with a read-ahead buffer for small items."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size
        self.pos = 0
        self._buf = b""
        self._buf_start = 0

    def remaining(self) -> int:
        return self.size - self.pos

    def read(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.size - self.pos:
            raise _Cut(what, self.pos)
        off = self.pos - self._buf_start
        if 0 <= off and off + n <= len(self._buf):
            out = self._buf[off : off + n]
        else:
            self._f.seek(self.pos)
            if n >= _CHUNK:
                out = self._f.read(n)
            else:
                self._buf = self._f.read(_CHUNK)
                self._buf_start = self.pos
                out = self._buf[:n]
        if len(out) != n:  # the file shrank while we read it
            raise _Cut(what, self.pos)
        self.pos += n
        return out

    def skip(self, n: int, what: str) -> None:
        if n < 0 or n > self.size - self.pos:
            raise _Cut(what, self.pos)
        self.pos += n

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.read(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack("<Q", self.read(8, what))[0])

    def scalar(self, vtype: int, what: str) -> Any:
        fmt = SCALAR_FORMATS[vtype]
        value = struct.unpack("<" + fmt, self.read(struct.calcsize(fmt), what))[0]
        return bool(value) if vtype == ValueType.BOOL else value

    def string_len(self, what: str) -> int:
        n = self.u64(f"the length of {what}")
        if n > self.remaining():
            raise InvalidGguf(
                f"{what} claims to be {n} bytes long but only {self.remaining()} bytes are left in the file: "
                f"the header is corrupt or the file is truncated, {REDOWNLOAD}"
            )
        return n

    def string(self, what: str, keep: int = KEEP_STRING_BYTES) -> tuple[str | None, bool]:
        """Read a string; returns (text or None when longer than ``keep``, is valid UTF-8)."""
        n = self.string_len(what)
        if n <= keep:
            raw = self.read(n, what)
            try:
                return raw.decode("utf-8"), True
            except UnicodeDecodeError:
                return raw.decode("utf-8", errors="replace"), False
        decoder = codecs.getincrementaldecoder("utf-8")()
        ok = True
        left = n
        while left:
            step = min(left, _CHUNK)
            chunk = self.read(step, what)
            left -= step
            if ok:
                try:
                    decoder.decode(chunk, final=left == 0)
                except UnicodeDecodeError:
                    ok = False
        return None, ok


def _printable_start(head: bytes) -> str:
    text = head[:24].decode("latin-1")
    return "".join(c if c.isprintable() else "?" for c in text)


def _not_gguf_message(head: bytes, size: int) -> str:
    start = head.lstrip()
    if size == 0:
        return f"the file is empty (0 bytes), not a GGUF model: {REDOWNLOAD}"
    if start.startswith(b"version https://git-lfs"):
        return "the file is a Git LFS pointer, not the model itself: download the real file (for example with `tara models download`)"
    lowered = start[:64].lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<?xml", b"{")):
        return "the file is a web page or JSON text, not a GGUF model (probably an error page saved by a download): download it again"
    if head[:4] in (b"lmgg", b"fmgg", b"tjgg", b"ggml", b"ggjt", b"ggmf"):
        return "the file is an old GGML/GGJT model that llama.cpp no longer reads: download a GGUF version of the model"
    if head[:4] == b"PK\x03\x04":
        return "the file is a ZIP/PyTorch checkpoint, not a GGUF model: convert it with `tara export` or download a GGUF file"
    if size < 4:
        return f"the file is only {size} bytes long, not a GGUF model: {REDOWNLOAD}"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:256]):
        return f"the file is text (it starts with {_printable_start(head)!r}), not a GGUF model: choose a .gguf model file"
    return f"the file does not start with the GGUF magic bytes (it starts with {head[:4].hex(' ')}): it is not a GGUF model or is corrupt; {REDOWNLOAD}"


def _open(path: Path) -> tuple[BinaryIO, int]:
    try:
        if path.is_dir():
            raise InvalidGguf(f"{path} is a folder, not a GGUF file: give the path of a .gguf file")
        f = open(path, "rb")  # noqa: SIM115 - closed by the caller
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


def _read_value(r: _Reader, vtype: int, key: str, problems: list[MetadataProblem]) -> Any:
    if vtype in SCALAR_FORMATS:
        return r.scalar(vtype, f"the value of {key}")
    if vtype == ValueType.STRING:
        text, ok = r.string(f"the value of {key}")
        if not ok:
            problems.append(
                MetadataProblem("bad_utf8_value", key, f"metadata value {key} is not valid UTF-8 text")
            )
        return text
    if vtype == ValueType.ARRAY:
        item_type = r.u32(f"the array type of {key}")
        count = r.u64(f"the array length of {key}")
        if item_type == ValueType.ARRAY:
            raise InvalidGguf(
                f"metadata key {key} holds an array of arrays, which llama.cpp cannot read: "
                f"the file is corrupt or was written by an incompatible tool; {REDOWNLOAD}"
            )
        if item_type not in SCALAR_FORMATS and item_type != ValueType.STRING:
            raise InvalidGguf(
                f"metadata key {key} is an array of unknown value type {item_type}: "
                f"the header is corrupt, {REDOWNLOAD}"
            )
        min_item = 8 if item_type == ValueType.STRING else struct.calcsize(SCALAR_FORMATS[item_type])
        if count > r.remaining() // min_item:
            raise InvalidGguf(
                f"metadata array {key} claims {count} items but only {r.remaining()} bytes are left in the file: "
                f"the header is corrupt or the file is truncated, {REDOWNLOAD}"
            )
        if item_type == ValueType.STRING:
            keep = count <= KEEP_STRING_ITEMS
            items: list[Any] = []
            for i in range(count):
                n = r.string_len(f"item {i} of {key}")
                if keep and n <= 65536:
                    items.append(r.read(n, f"item {i} of {key}").decode("utf-8", errors="replace"))
                else:
                    keep = False
                    items = []
                    r.skip(n, f"item {i} of {key}")
            return ArrayValue(item_type, count, tuple(items) if keep else None)
        fmt = SCALAR_FORMATS[item_type]
        nbytes = count * min_item
        if count <= KEEP_ARRAY_ITEMS:
            values = struct.unpack(f"<{count}{fmt}", r.read(nbytes, f"the items of {key}"))
            if item_type == ValueType.BOOL:
                values = tuple(bool(v) for v in values)
            return ArrayValue(item_type, count, tuple(values))
        r.skip(nbytes, f"the items of {key}")
        return ArrayValue(item_type, count, None)
    raise InvalidGguf(
        f"metadata key {key} has unknown value type {vtype}: the header is corrupt, {REDOWNLOAD}"
    )


def _check_chat_template(text: str) -> str | None:
    """None when the template compiles as Jinja (as llama-cpp-python renders it), else the reason."""
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:  # pragma: no cover - jinja2 ships with llama-cpp-python
        return None
    try:
        ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(text)
    except Exception as exc:  # any template error means the template is unusable
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        return f"{type(exc).__name__}{where}"
    return None


def _pad(x: int, n: int) -> int:
    return x + (-x % n)


def _derive_alignment(
    header_end: int, raw: list[tuple[str, int, int]], size: int
) -> tuple[int, int] | None:
    """Find the alignment the tensor data was really laid out with, when ``general.alignment`` is wrong.

    ``raw`` holds (name, relative offset, n_bytes). A candidate must reproduce every offset as the
    running padded sum (as llama.cpp requires) and make the data end exactly at the end of the file, so
    the data start it implies is the true one. Returns (alignment, data start) or None when no single
    layout fits.
    """
    fits: dict[int, int] = {}  # data start -> largest alignment giving it
    for shift in range(17):
        a = 1 << shift
        pos = 0
        ok = True
        for _name, off, n in raw:
            if off != pos:
                ok = False
                break
            pos += _pad(n, a)
        start = _pad(header_end, a)
        if ok and start + pos == size:
            fits[start] = a
    if len(fits) != 1:
        return None
    start, a = next(iter(fits.items()))
    return a, start


def _parse(path: Path, f: BinaryIO, size: int) -> GgufInfo:
    r = _Reader(f, size)
    head = r.read(min(size, 256), "the magic bytes")
    r.pos = 0
    if size < 4 or head[:4] != MAGIC:
        raise InvalidGguf(_not_gguf_message(head, size))
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

    problems: list[MetadataProblem] = []
    metadata: dict[str, Any] = {}
    entries: list[KvEntry] = []
    value_types: dict[str, int] = {}
    for i in range(n_kv):
        start = r.pos
        key, key_ok = r.string(f"metadata key {i}", keep=65536)
        if key is None:
            raise InvalidGguf(f"metadata key {i} is longer than 64 KiB: the header is corrupt, {REDOWNLOAD}")
        label = key if key_ok else f"#{i}"
        if not key_ok:
            problems.append(
                MetadataProblem("bad_utf8_key", label, f"metadata key {i} ({key!r}) is not valid UTF-8")
            )
        vtype = r.u32(f"the value type of metadata key {label}")
        value = _read_value(r, vtype, label, problems)
        entries.append(KvEntry(label, key_ok, vtype, start, r.pos))
        if key_ok:
            if key in metadata:
                problems.append(
                    MetadataProblem("duplicate_key", key, f"metadata key {key} appears more than once")
                )
                continue
            metadata[key] = value
            value_types[key] = vtype

    alignment = DEFAULT_ALIGNMENT
    alignment_problem: str | None = None
    if "general.alignment" in metadata:
        a = metadata["general.alignment"]
        if value_types["general.alignment"] != ValueType.UINT32:
            alignment_problem = "general.alignment is not stored as a uint32 (llama.cpp would abort)"
        elif a == 0 or a & (a - 1) or a > 1 << 16:
            alignment_problem = f"general.alignment is {a}, not a power of two up to 65536"
        else:
            alignment = int(a)

    types = ggml_types()
    tensors_raw: list[tuple[str, tuple[int, ...], int, int, int, int]] = []
    names: set[str] = set()
    for i in range(n_tensors):
        name_s, name_ok = r.string(f"the name of tensor {i}", keep=65536)
        if name_s is None or not name_ok:
            raise InvalidGguf(f"the name of tensor {i} is not valid UTF-8 text: the header is corrupt, {REDOWNLOAD}")
        name = name_s
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise InvalidGguf(
                f"tensor {i} has a {len(name.encode('utf-8'))}-byte name (llama.cpp allows {MAX_NAME_BYTES}): "
                f"the header is corrupt, {REDOWNLOAD}"
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
        tensors_raw.append((name, shape, type_id, offset, n_bytes, n_elements))
    header_end = r.pos

    derived: int | None = None
    layout = [(t[0], t[3], t[4]) for t in tensors_raw]
    data_offset = _pad(header_end, alignment)
    misfit = alignment_problem is not None or any(off % alignment for _n, off, _b in layout)
    if misfit:
        found = _derive_alignment(header_end, layout, size)
        if found is not None:
            derived, data_offset = found
            claimed = metadata.get("general.alignment")
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
            alignment = derived
        elif alignment_problem is not None:
            raise InvalidGguf(
                f"{alignment_problem} and the real alignment cannot be worked out: the file is corrupt, {REDOWNLOAD}"
            )
    if data_offset > size and tensors_raw:
        raise InvalidGguf(
            f"the tensor data should start at byte {data_offset} but the file has {size} bytes: "
            f"the file is truncated, {REDOWNLOAD}"
        )

    tensors: list[TensorInfo] = []
    expected = 0
    for name, shape, type_id, offset, n_bytes, n_elements in tensors_raw:
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
        tensors.append(
            TensorInfo(name, shape, type_id, types[type_id][0], start, n_bytes, n_elements)
        )

    template = metadata.get("tokenizer.chat_template")
    if isinstance(template, str) and not any(p.key == "tokenizer.chat_template" for p in problems):
        why = _check_chat_template(template)
        if why is not None:
            problems.append(
                MetadataProblem(
                    "chat_template", "tokenizer.chat_template", f"the chat template does not parse ({why})"
                )
            )

    return _describe(path, size, version, alignment, data_offset, header_end, metadata, entries,
                     tensors, problems, derived)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, ArrayValue) and value.items:
        nums = [v for v in value.items if isinstance(v, int) and not isinstance(v, bool)]
        return max(nums) if nums else None
    return None


def _describe(
    path: Path,
    size: int,
    version: int,
    alignment: int,
    data_offset: int,
    header_end: int,
    metadata: dict[str, Any],
    entries: list[KvEntry],
    tensors: list[TensorInfo],
    problems: list[MetadataProblem],
    derived: int | None,
) -> GgufInfo:
    arch = metadata.get("general.architecture")
    arch = arch if isinstance(arch, str) else None

    def arch_key(suffix: str) -> int | None:
        return _int(metadata.get(f"{arch}.{suffix}")) if arch else None

    ft = _int(metadata.get("general.file_type"))
    file_type = file_type_names().get(ft) if ft is not None else None
    bytes_by_type: Counter[str] = Counter()
    count_by_type: Counter[str] = Counter()
    for t in tensors:
        bytes_by_type[t.type_name] += t.n_bytes
        count_by_type[t.type_name] += 1
    dominant = bytes_by_type.most_common(1)[0][0] if bytes_by_type else None
    tokens = metadata.get("tokenizer.ggml.tokens")
    vocab = tokens.count if isinstance(tokens, ArrayValue) else arch_key("vocab_size")
    tok_model = metadata.get("tokenizer.ggml.model")
    name = metadata.get("general.name")
    model_type = metadata.get("general.type")
    template = metadata.get("tokenizer.chat_template")
    return GgufInfo(
        path=path,
        size_bytes=size,
        version=version,
        alignment=alignment,
        data_offset=data_offset,
        architecture=arch,
        model_type=model_type if isinstance(model_type, str) else "model",
        name=name if isinstance(name, str) else None,
        parameter_count=sum(t.n_elements for t in tensors),
        file_type=file_type,
        dominant_type=dominant,
        context_length=arch_key("context_length"),
        chat_template=isinstance(template, str) and bool(template.strip()),
        tokenizer_model=tok_model if isinstance(tok_model, str) else None,
        vocab_size=vocab,
        n_layers=arch_key("block_count"),
        n_embd=arch_key("embedding_length"),
        n_head=arch_key("attention.head_count"),
        n_head_kv=arch_key("attention.head_count_kv") or arch_key("attention.head_count"),
        head_dim_k=arch_key("attention.key_length"),
        head_dim_v=arch_key("attention.value_length"),
        tensor_count=len(tensors),
        tensor_types=dict(count_by_type.most_common()),
        tensors=tuple(tensors),
        metadata=metadata,
        kv_entries=tuple(entries),
        header_end=header_end,
        problems=tuple(problems),
        derived_alignment=derived,
    )


def inspect(path: str | os.PathLike[str]) -> GgufInfo:
    """Parse the header of a GGUF file. Raises :class:`InvalidGguf` for structural damage; damage limited
    to metadata is listed in ``problems`` instead (see :func:`validate`)."""
    p = Path(path)
    f, size = _open(p)
    try:
        return _parse(p, f, size)
    except _Cut as cut:
        raise InvalidGguf(
            f"the file ends at byte {size} in the middle of the header (while reading {cut.what}): "
            f"the file is truncated, {REDOWNLOAD}"
        ) from None
    except InvalidGguf:
        raise
    except (struct.error, ValueError, OverflowError, MemoryError) as exc:  # defensive: never a traceback
        raise InvalidGguf(
            f"the GGUF header cannot be read ({type(exc).__name__}): the file is corrupt, {REDOWNLOAD}"
        ) from None
    except OSError as exc:
        raise InvalidGguf(f"{p} cannot be read ({exc.strerror or exc}): check the disk and the file") from None
    finally:
        f.close()


def sha256_file(path: str | os.PathLike[str], *, state: Any = None) -> str:
    """Stream a file through sha256 (``state``: an optional JobState for progress and cancel)."""
    h = hashlib.sha256()
    p = Path(path)
    total = max(1, p.stat().st_size)
    done = 0
    with open(p, "rb") as f:
        while chunk := f.read(_CHUNK * 4):
            h.update(chunk)
            done += len(chunk)
            if state is not None:
                state.check()
                state.report(done / total, "checking the file's sha256")
    return h.hexdigest()


def validate(
    path: str | os.PathLike[str], *, expected_sha256: str | None = None, state: Any = None
) -> GgufInfo:
    """Check that a GGUF file will load: everything :func:`inspect` checks, no metadata damage, and the
    sha256 when ``expected_sha256`` is given. Raises :class:`InvalidGguf` with one line naming the
    problem and the fix."""
    info = inspect(path)
    if info.problems:
        first = info.problems[0]
        more = f" (and {len(info.problems) - 1} more metadata problems)" if len(info.problems) > 1 else ""
        raise InvalidGguf(
            f"{first.message}{more}: the tensor data looks intact, so `tara gguf repair {info.path} FIXED.gguf` "
            "can write a fixed copy"
        )
    if expected_sha256:
        try:
            digest = sha256_file(info.path, state=state)
        except OSError as exc:
            raise InvalidGguf(f"{info.path} cannot be read ({exc.strerror or exc}): check the disk and the file") from None
        if digest.lower() != expected_sha256.strip().lower():
            raise InvalidGguf(
                f"the file's sha256 is {digest} but {expected_sha256.strip().lower()} was expected: "
                "the file is damaged or a different version, download it again"
            )
        info = _with_sha(info, digest)
    return info


def _with_sha(info: GgufInfo, digest: str) -> GgufInfo:
    return replace(info, sha256=digest)


__all__ = [
    "ArrayValue",
    "GgufInfo",
    "InvalidGguf",
    "KvEntry",
    "MetadataProblem",
    "TensorInfo",
    "ValueType",
    "inspect",
    "sha256_file",
    "validate",
]
