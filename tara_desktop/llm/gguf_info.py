"""What a GGUF file holds, as read from its header: :class:`GgufInfo` (architecture, sizes, tokenizer,
quantization, the metadata and tensors), built by :func:`describe` from what
:mod:`tara_desktop.llm.gguf_header` parsed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tara_desktop.llm.gguf_reader import ArrayValue, MetadataProblem, MetadataValue


@lru_cache(maxsize=1)
def ggml_types() -> dict[int, tuple[str, int, int]]:
    """ggml tensor type id -> (name, block size, bytes per block), from the ``gguf`` package."""
    from gguf import GGML_QUANT_SIZES

    return {int(t): (t.name, blk, size) for t, (blk, size) in GGML_QUANT_SIZES.items()}


@lru_cache(maxsize=1)
def file_type_names() -> dict[int, str]:
    """``general.file_type`` id -> its name (Q4_K_M, F16...), from the ``gguf`` package."""
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
    metadata: dict[str, MetadataValue]
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


def metadata_int(value: object) -> int | None:
    """An integer metadata value (the largest of a per-layer array), or None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, ArrayValue) and value.items:
        nums = [v for v in value.items if isinstance(v, int) and not isinstance(v, bool)]
        return max(nums) if nums else None
    return None


def describe(
    path: Path,
    size: int,
    *,
    version: int,
    alignment: int,
    data_offset: int,
    header_end: int,
    metadata: dict[str, MetadataValue],
    entries: list[KvEntry],
    tensors: list[TensorInfo],
    problems: list[MetadataProblem],
    derived: int | None,
) -> GgufInfo:
    """The :class:`GgufInfo` of a parsed header: the metadata's numbers under their own names."""
    arch = metadata.get("general.architecture")
    arch = arch if isinstance(arch, str) else None

    def arch_key(suffix: str) -> int | None:
        return metadata_int(metadata.get(f"{arch}.{suffix}")) if arch else None

    ft = metadata_int(metadata.get("general.file_type"))
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


__all__ = ["GgufInfo", "KvEntry", "TensorInfo", "describe", "file_type_names", "ggml_types", "metadata_int"]
