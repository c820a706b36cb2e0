"""Is this file a chat model TARA can answer with? The one validator every way in uses (the engine, the
pool, a turn, ``tara models add``, the Models page): the GGUF checks of :mod:`tara_desktop.llm.gguf_file`
(one clear line on a damaged file), then the chat-model checks (weights, not an adapter, a chat template or
an architecture with a known chat format), each failure one line naming the file and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tara_desktop.errors import TaraError
from tara_desktop.llm import gguf_file, memory
from tara_desktop.llm.file_versions import PerFileVersion, Version, version_of

if TYPE_CHECKING:
    from tara_desktop.jobs import JobState
    from tara_desktop.llm.gguf_info import GgufInfo


class ModelLoadError(TaraError):
    """A model file could not be loaded (no chat model, does not fit, unsupported, or llama.cpp refused it)."""


CHAT_ARCHITECTURES = frozenset({
    "llama", "llama4", "mistral3", "qwen", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "phi2", "phi3", "phimoe",
    "gemma", "gemma2", "gemma3", "starcoder2", "stablelm", "internlm2", "olmo", "olmo2", "olmoe", "granite",
    "granitemoe", "deepseek", "deepseek2", "command-r", "cohere2", "exaone", "falcon", "smollm3", "minicpm",
    "minicpm3", "nemotron", "chatglm", "glm4", "baichuan", "orion", "openelm", "arctic", "dbrx", "gptneox",
    "mpt", "bloom", "gpt2", "starcoder", "refact", "codeshell", "xverse", "plamo", "mamba", "rwkv6",
})
"""Decoder architectures TARA chats with when the file carries no chat template (with ChatML)."""

_VALIDATED: PerFileVersion[str] = PerFileVersion()
"""File version -> why it is no chat model ("" when it is one): a file that passed is not parsed again."""


def not_a_chat_model(info: GgufInfo) -> str | None:
    """Why a GGUF that parses is still no chat model TARA can answer with (one line, naming the file and
    what to do), or None."""
    name = info.path.name
    if info.model_type == "adapter":
        return (f"{name} is a LoRA adapter, not a model: choose a model file as the model and use the adapter "
                "with it (--adapter, or the Domains → models mapping)")
    if info.tensor_count == 0:
        return (f"{name} holds only metadata and no weights (0 tensors), so it is not a model TARA can run: "
                "download the complete model file again, or choose another model (`tara models list`)")
    if not info.chat_template and info.architecture not in CHAT_ARCHITECTURES:
        arch = info.architecture or "none given"
        return (f"{name} is not a chat model: it has no chat template and its architecture ({arch}) has no "
                "known chat format; choose an instruction-tuned chat GGUF (`tara models list`)")
    return None


def _remember(key: Path, version: Version | None, info: GgufInfo) -> str | None:
    """Record a file just validated (and its memory shape, so a load does not parse it again); returns
    why it is no chat model, or None."""
    memory.remember(info)
    problem = not_a_chat_model(info)
    _VALIDATED.put(key, version, problem or "")
    return problem


def validate_gguf(path: str | os.PathLike[str], *, chat_model: bool = True) -> None:
    """Validate a GGUF before llama.cpp opens it (one clear line on a bad file), and with ``chat_model``
    (not for an adapter) that it is a chat model (raises :class:`ModelLoadError` naming the file otherwise).

    A file that passed and has not changed since (same size, modification time and inode) is not
    parsed again, so reloading a model or switching back to an adapter stays cheap."""
    key = Path(path).resolve()
    version = version_of(key)
    known = _VALIDATED.get(key, version)
    if known is None:
        problem = _remember(key, version, gguf_file.validate(key))
    else:
        problem = known or None
    if chat_model and problem is not None:
        raise ModelLoadError(problem)


def validate_chat_model(
    path: str | os.PathLike[str], *, expected_sha256: str | None = None, state: JobState | None = None
) -> GgufInfo:
    """:func:`validate_gguf` for a file being added to the user's models: always parsed, the sha256 checked
    when ``expected_sha256`` is given, and the header returned. Raises the same one-line errors."""
    key = Path(path).resolve()
    version = version_of(key)
    info = gguf_file.validate(key, expected_sha256=expected_sha256, state=state)
    problem = _remember(key, version, info)
    if problem is not None:
        raise ModelLoadError(problem)
    return info


__all__ = ["CHAT_ARCHITECTURES", "ModelLoadError", "not_a_chat_model", "validate_chat_model", "validate_gguf"]
