"""Bounded reading of GGUF headers: every length and count is checked against the bytes left in the file
before anything is read or allocated, so a hostile header can neither exhaust memory nor loop for long.

Used by :mod:`tara_desktop.llm.gguf_header`, which parses the header into a :class:`~tara_desktop.llm.gguf_info.GgufInfo`.
"""

from __future__ import annotations

import codecs
import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import BinaryIO, TypeAlias

from tara_desktop.errors import TaraError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_NAME_BYTES = 63  # llama.cpp: GGML_MAX_NAME = 64 including the terminating NUL
MAX_DIMS = 4
MAX_TENSORS = 200_000  # far above any real model; keeps memory bounded on hostile counts
MAX_KVS = 65_536
MAX_KEY_BYTES = 1024
KEEP_STRING_BYTES = 4 << 20  # metadata strings up to this size are kept in GgufInfo.metadata
KEEP_ARRAY_ITEMS = 4096  # numeric arrays up to this many items are kept (per-layer head counts ...)
KEEP_STRING_ITEMS = 256
KEEP_TOTAL_BYTES = 64 << 20  # all kept metadata together (a hostile file cannot make us hold more)
_CHUNK = 1 << 20
_U64 = struct.Struct("<Q")
MAX_UNIQUE_CHECK = 1_000_000  # vocabularies up to this size are checked for duplicate tokens

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

Scalar: TypeAlias = int | float | bool


@dataclass(frozen=True, slots=True)
class ArrayValue:
    """A metadata array: its item type, length and (when small) its items."""

    item_type: int
    count: int
    items: tuple[Scalar | str, ...] | None = None


MetadataValue: TypeAlias = Scalar | str | ArrayValue | None
"""One metadata value as kept: a number, a string (None when too long to keep), or an array."""


@dataclass(frozen=True, slots=True)
class MetadataProblem:
    """Damage limited to metadata: ``tara gguf repair`` can write a fixed copy."""

    kind: str  # "bad_utf8_key" | "bad_utf8_value" | "duplicate_key" | "alignment" | "chat_template"
    key: str
    message: str


class Cut(Exception):
    """The file ended while reading ``what``."""

    def __init__(self, what: str, pos: int) -> None:
        super().__init__(what)
        self.what = what
        self.pos = pos


class Reader:
    """Bounded little-endian reads over a file, with a read-ahead buffer for small items."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size
        self.pos = 0
        self._buf = b""
        self._buf_start = 0
        self.keep_budget = KEEP_TOTAL_BYTES

    def may_keep(self, n_bytes: int) -> bool:
        """Reserve room to keep ``n_bytes`` of metadata in memory; False once the budget is spent."""
        if n_bytes > self.keep_budget:
            return False
        self.keep_budget -= n_bytes
        return True

    def remaining(self) -> int:
        return self.size - self.pos

    def read(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.size - self.pos:
            raise Cut(what, self.pos)
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
            raise Cut(what, self.pos)
        self.pos += n
        return out

    def skip(self, n: int, what: str) -> None:
        if n < 0 or n > self.size - self.pos:
            raise Cut(what, self.pos)
        self.pos += n

    def walk_strings(self, count: int, key: str, *, unique: bool = False) -> None:
        """Step over ``count`` length-prefixed strings (a tokenizer's vocabulary or merges) quickly: the
        lengths are read straight from the read-ahead buffer, each one checked against the file size.
        With ``unique``, a string that appears twice is an error (llama.cpp aborts on a duplicate token)."""
        size = self.size
        pos = self.pos
        buf, start = self._buf, self._buf_start
        last = start + len(buf) - 8  # the last position whose 8-byte length is inside the buffer
        unpack = _U64.unpack_from
        seen: set[bytes] | None = set() if unique and count <= MAX_UNIQUE_CHECK else None
        for i in range(count):
            if pos > last or pos < start:
                if pos + 8 > size:
                    raise Cut(f"the length of item {i} of {key}", pos)
                self._f.seek(pos)
                buf, start = self._f.read(_CHUNK), pos
                last = start + len(buf) - 8
                if pos > last:
                    raise Cut(f"the length of item {i} of {key}", pos)
            (n,) = unpack(buf, pos - start)
            if pos + 8 + n > size:
                raise InvalidGguf(
                    f"item {i} of {key} claims to be {n} bytes long but only {size - pos - 8} bytes are left in "
                    f"the file: the header is corrupt or the file is truncated, {REDOWNLOAD}"
                )
            if seen is not None:
                off = pos + 8 - start
                if off + n <= len(buf):
                    item = buf[off : off + n]
                else:
                    self._f.seek(pos + 8)
                    item = self._f.read(min(n, 1 << 16))
                    if n > 1 << 16:  # an absurdly long token: compare a digest, not the whole string
                        item = hashlib.sha256(item + self._f.read(n - (1 << 16))).digest() + b"#long"
                # llama.cpp reads a token as a C string (up to the first NUL) and names an empty one
                # [EMPTY_<id>]: compare what it will see
                nul = item.find(b"\0")
                if nul >= 0:
                    item = item[:nul]
                if not item:
                    item = f"[EMPTY_{i}]".encode()
                if item in seen:
                    raise InvalidGguf(
                        f"{key} holds the same text twice (item {i}), which makes llama.cpp abort: "
                        f"the tokenizer metadata is corrupt, {REDOWNLOAD}"
                    )
                seen.add(item)
            pos += 8 + n
        self.pos = pos
        self._buf, self._buf_start = buf, start

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.read(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack("<Q", self.read(8, what))[0])

    def scalar(self, vtype: int, what: str) -> Scalar:
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

    def short_string(self, what: str, limit: int) -> tuple[str, bool]:
        """A key or a tensor name: at most ``limit`` bytes (longer is corruption); (text, is valid UTF-8)."""
        n = self.string_len(what)
        if n > limit:
            raise InvalidGguf(
                f"{what} is {n} bytes long (at most {limit} make sense): the header is corrupt, {REDOWNLOAD}"
            )
        raw = self.read(n, what)
        try:
            return raw.decode("utf-8"), True
        except UnicodeDecodeError:
            return raw.decode("utf-8", errors="replace"), False

    def string(self, what: str, keep: int = KEEP_STRING_BYTES) -> tuple[str | None, bool]:
        """Read a string; returns (text or None when longer than ``keep``, is valid UTF-8)."""
        n = self.string_len(what)
        if n <= keep and self.may_keep(n + 64):
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


def not_gguf_message(head: bytes, size: int) -> str:
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


def read_value(r: Reader, vtype: int, key: str, problems: list[MetadataProblem]) -> MetadataValue:
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
            unique = key == "tokenizer.ggml.tokens"
            if count > KEEP_STRING_ITEMS or not r.may_keep(count * 64):
                r.walk_strings(count, key, unique=unique)
                return ArrayValue(item_type, count, None)
            if unique:  # check for duplicates, then come back and keep the (few) items
                back = r.pos
                r.walk_strings(count, key, unique=True)
                r.pos = back
            items: list[Scalar | str] | None = []
            for i in range(count):
                n = r.string_len(f"item {i} of {key}")
                if items is not None and n <= 65536 and r.may_keep(n):
                    items.append(r.read(n, f"item {i} of {key}").decode("utf-8", errors="replace"))
                else:  # a long item: keep none of them, and never hold a huge string in memory
                    items = None
                    r.skip(n, f"item {i} of {key}")
            return ArrayValue(item_type, count, tuple(items) if items is not None else None)
        fmt = SCALAR_FORMATS[item_type]
        nbytes = count * min_item
        if count <= KEEP_ARRAY_ITEMS and r.may_keep(count * 40):
            values = struct.unpack(f"<{count}{fmt}", r.read(nbytes, f"the items of {key}"))
            if item_type == ValueType.BOOL:
                values = tuple(bool(v) for v in values)
            return ArrayValue(item_type, count, tuple(values))
        r.skip(nbytes, f"the items of {key}")
        return ArrayValue(item_type, count, None)
    raise InvalidGguf(
        f"metadata key {key} has unknown value type {vtype}: the header is corrupt, {REDOWNLOAD}"
    )
