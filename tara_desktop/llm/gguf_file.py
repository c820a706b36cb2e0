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

import hashlib
import math
import os
import stat
import struct
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from tara_desktop.llm.gguf_reader import (
    DEFAULT_ALIGNMENT,
    MAGIC,
    MAX_DIMS,
    MAX_KEY_BYTES,
    MAX_KVS,
    MAX_NAME_BYTES,
    MAX_TENSORS,
    REDOWNLOAD,
    ArrayValue,
    Cut,
    InvalidGguf,
    MetadataProblem,
    Reader,
    ValueType,
    not_gguf_message,
    read_value,
)

_HASH_CHUNK = 4 << 20


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
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_id: int
    type_name: str
    offset: int  # absolute byte offset of the data in the file
    n_bytes: int
    n_elements: int


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
        """Bytes of an f16 KV cache for ``n_ctx`` tokens (0 when the metadata lacks the shape); the formula
        is :func:`tara_desktop.llm.memory.kv_cache_bytes`."""
        from tara_desktop.llm import memory

        return memory.kv_cache_bytes(memory.shape_from_gguf(self), n_ctx)

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


def _open(path: Path) -> tuple[BinaryIO, int]:
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
    r = Reader(f, size)
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

    problems: list[MetadataProblem] = []
    metadata: dict[str, Any] = {}
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

    _check_tokenizer(metadata)
    if metadata.get("general.type", "model") != "adapter":
        _check_hparams(metadata)

    template = metadata.get("tokenizer.chat_template")
    if isinstance(template, str) and not any(p.key == "tokenizer.chat_template" for p in problems):
        why = _check_chat_template(template)
        if why is not None:
            problems.append(
                MetadataProblem(
                    "chat_template", "tokenizer.chat_template", f"the chat template does not parse ({why})"
                )
            )

    return _describe(
        path, size, version=version, alignment=alignment, data_offset=data_offset, header_end=header_end,
        metadata=metadata, entries=entries, tensors=tensors, problems=problems, derived=derived,
    )


def _check_tokenizer(metadata: dict[str, Any]) -> None:
    """The vocabulary arrays llama.cpp indexes by token id must agree, or it reads past their end."""
    tokens = metadata.get("tokenizer.ggml.tokens")
    if tokens is None:
        return
    if not isinstance(tokens, ArrayValue) or tokens.item_type != ValueType.STRING:
        raise InvalidGguf(
            f"tokenizer.ggml.tokens is not a list of strings (llama.cpp would abort): the tokenizer metadata "
            f"is corrupt, {REDOWNLOAD}"
        )
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        other = metadata.get(key)
        if other is None:
            continue
        count = other.count if isinstance(other, ArrayValue) else None
        if count != tokens.count:
            what = f"{count} entries" if count is not None else "a single value"
            raise InvalidGguf(
                f"{key} has {what} but there are {tokens.count} tokens: the tokenizer metadata is corrupt, "
                f"{REDOWNLOAD}"
            )


LLAMA_MAX_LAYERS = 512
LLAMA_MAX_EXPERTS = 512
ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")


def _check_hparams(metadata: dict[str, Any]) -> None:
    """Settings llama.cpp checks with assertions while loading: a bad value there aborts the whole
    process instead of failing the load, so it must be caught here."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        return

    def num(suffix: str) -> int | None:
        return _int(metadata.get(f"{arch}.{suffix}"))

    def bad(what: str) -> InvalidGguf:
        return InvalidGguf(f"{what}, which makes llama.cpp abort: the model's settings are corrupt, {REDOWNLOAD}")

    layers = num("block_count")
    if layers is not None and not 1 <= layers <= LLAMA_MAX_LAYERS:
        raise bad(f"{arch}.block_count is {layers} (llama.cpp allows 1 to {LLAMA_MAX_LAYERS})")
    nextn = num("nextn_predict_layers")
    if nextn is not None and layers is not None and nextn > layers:
        raise bad(f"{arch}.nextn_predict_layers is {nextn}, more than the {layers} layers")
    experts = num("expert_count") or 0
    used = num("expert_used_count") or 0
    groups = num("expert_group_count") or 0
    group_used = num("expert_group_used_count") or 0
    if experts > LLAMA_MAX_EXPERTS:
        raise bad(f"{arch}.expert_count is {experts} (llama.cpp allows up to {LLAMA_MAX_EXPERTS})")
    if used > experts:
        raise bad(f"{arch}.expert_used_count is {used}, more than the {experts} experts")
    if experts > 0:
        if used == 0 or groups >= experts:
            raise bad(f"{arch} has {experts} experts but uses {used} of them in {groups} groups")
        if groups > 1 and (experts % groups or not 0 < group_used < groups):
            raise bad(f"{arch} splits {experts} experts into {groups} groups and uses {group_used} of them")
    elif groups:
        raise bad(f"{arch}.expert_group_count is {groups} for a model without experts")
    for suffix in ("attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon"):
        eps = metadata.get(f"{arch}.{suffix}")
        if isinstance(eps, float) and not (eps >= 0.0 and math.isfinite(eps)):
            raise bad(f"{arch}.{suffix} is {eps}, not a small positive number")
    scaling = metadata.get(f"{arch}.rope.scaling.type")
    if isinstance(scaling, str) and scaling not in ROPE_SCALING_TYPES:
        raise bad(f"{arch}.rope.scaling.type is {scaling[:40]!r}, not one of {', '.join(ROPE_SCALING_TYPES)}")


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
    *,
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
    except Cut as cut:
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
        while chunk := f.read(_HASH_CHUNK):
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
