"""Checks of a GGUF's metadata that llama.cpp makes with assertions while loading (a bad value there aborts
the whole process instead of failing the load, so it must be caught first), and whether its chat template
compiles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from tara_desktop.llm.gguf_info import metadata_int
from tara_desktop.llm.gguf_reader import REDOWNLOAD, ArrayValue, InvalidGguf, MetadataValue, ValueType


def chat_template_problem(text: str) -> str | None:
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


def check_tokenizer(metadata: Mapping[str, MetadataValue]) -> None:
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


def check_hparams(metadata: Mapping[str, MetadataValue]) -> None:
    """Settings llama.cpp checks with assertions while loading: a bad value there aborts the whole
    process instead of failing the load, so it must be caught here."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        return

    def num(suffix: str) -> int | None:
        return metadata_int(metadata.get(f"{arch}.{suffix}"))

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


__all__ = ["chat_template_problem", "check_hparams", "check_tokenizer"]
