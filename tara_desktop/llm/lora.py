"""GGUF LoRA adapters on a loaded model: applied at run time with a scale (``llama_adapter_lora_init`` +
``llama_set_adapters_lora``) and swapped without reloading the base. Adapters already used are kept (up to
:data:`MAX_CACHED_ADAPTERS`) so switching back is instant; all are freed with the model.

The caller (:class:`tara_desktop.llm.engine.Engine`) holds its lock around every call here.
"""

from __future__ import annotations

import ctypes
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tara_desktop.errors import TaraError
from tara_desktop.llm.model_check import validate_gguf

if TYPE_CHECKING:
    from llama_cpp import Llama

MAX_CACHED_ADAPTERS = 8


class AdapterError(TaraError):
    """A LoRA adapter could not be loaded or applied to the current model."""


@dataclass
class _Adapter:
    path: Path
    handle: ctypes.c_void_p  # llama_adapter_lora_p


class LoraAdapters:
    """The adapters loaded for one model (``llm``, whose file is ``model_name``) and the active one."""

    def __init__(self, llm: Llama, model_name: str) -> None:
        self._llm = llm
        self._model_name = model_name
        self._loaded: OrderedDict[Path, _Adapter] = OrderedDict()
        self.active: tuple[Path, float] | None = None

    def apply(self, path: str | os.PathLike[str] | None, scale: float = 1.0) -> bool:
        """Make the adapter at ``path`` (None: no adapter) active with ``scale``; returns whether anything
        changed (then the caller clears the KV cache)."""
        import llama_cpp

        if path is None:
            if self.active is None:
                return False
            if llama_cpp.llama_set_adapters_lora(self._llm.ctx, None, 0, None) != 0:
                raise AdapterError("llama.cpp could not remove the adapter; reload the model")
            self.active = None
            return True
        p = Path(path).expanduser().resolve()
        if self.active == (p, float(scale)):
            return False
        adapter = self._load(p)
        arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter.handle)  # type: ignore[misc]  # as llama-cpp-python declares it
        scales = (ctypes.c_float * 1)(float(scale))
        if llama_cpp.llama_set_adapters_lora(self._llm.ctx, arr, 1, scales) != 0:
            raise AdapterError(f"llama.cpp could not apply adapter {p.name} to {self._model_name}")
        self.active = (p, float(scale))
        return True

    def _load(self, p: Path) -> _Adapter:
        import llama_cpp

        cached = self._loaded.get(p)
        if cached is not None:
            self._loaded.move_to_end(p)
            return cached
        if not p.is_file():
            raise AdapterError(f"adapter file {p} does not exist; check the path in model_mapping.json")
        validate_gguf(p, chat_model=False)
        handle = llama_cpp.llama_adapter_lora_init(self._llm.model, str(p).encode("utf-8"))
        if not handle:
            raise AdapterError(
                f"adapter {p.name} does not fit model {self._model_name} (wrong base model, architecture or "
                "tensor shapes); export the adapter for this model"
            )
        adapter = _Adapter(p, handle)
        self._loaded[p] = adapter
        while len(self._loaded) > MAX_CACHED_ADAPTERS:
            old_path, old = next(iter(self._loaded.items()))
            if self.active is not None and self.active[0] == old_path:
                self._loaded.move_to_end(old_path)
                continue
            del self._loaded[old_path]
            llama_cpp.llama_adapter_lora_free(old.handle)
        return adapter

    def free(self) -> None:
        """Detach the active adapter and free every loaded one (before the model is freed)."""
        import llama_cpp

        try:
            if self.active is not None:
                llama_cpp.llama_set_adapters_lora(self._llm.ctx, None, 0, None)
            for adapter in self._loaded.values():
                llama_cpp.llama_adapter_lora_free(adapter.handle)
        finally:
            self._loaded.clear()
            self.active = None


__all__ = ["MAX_CACHED_ADAPTERS", "AdapterError", "LoraAdapters"]
