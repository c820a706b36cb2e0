"""Per-model generation presets: the catalog's preset applies when that model answers, the user's own
settings win (global ones they changed, then per-model ones), a request's own settings win over all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tara_desktop.config import LlmSettings
from tara_desktop.errors import TaraError
from tara_desktop.llm import presets
from tara_desktop.llm.catalog import load_catalog

BUNDLED = Path("/anywhere/SmolLM2-135M-Instruct.Q4_1.gguf")


class Store:
    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values = dict(values or {})

    def get_setting(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set_setting(self, key: str, value: Any) -> None:
        self.values[key] = value


def test_the_bundled_model_answers_with_its_preset() -> None:
    llm = LlmSettings()
    preset = load_catalog().get("smollm2-135m-instruct").preset
    assert preset is not None
    s = presets.generation_settings(BUNDLED, llm)
    assert (s.temperature, s.top_p, s.top_k, s.min_p, s.repeat_penalty) == (
        preset.temperature, preset.top_p, preset.top_k, preset.min_p, preset.repeat_penalty)
    assert s.max_tokens == preset.max_tokens and "<|im_start|>" in s.stop
    assert s.seed == llm.seed
    # a model the catalog does not know keeps the app's settings
    other = presets.generation_settings(Path("/x/unknown.gguf"), llm)
    assert (other.temperature, other.top_p, other.max_tokens, other.stop) == (llm.temperature, llm.top_p,
                                                                              llm.max_tokens, ())


def test_the_users_settings_win_in_order() -> None:
    llm = LlmSettings()
    store = Store({"config.overrides": {"llm": {"temperature": 0.9, "context_size": 4096}}})
    s = presets.generation_settings(BUNDLED, llm, store)
    assert s.temperature == 0.9  # the user changed it in Settings: it wins over the preset
    assert s.top_k == load_catalog().get("smollm2-135m-instruct").preset.top_k  # type: ignore[union-attr]
    presets.save_user_settings(store, "smollm2-135m-instruct", {"temperature": 0.1, "stop": ["END"]})
    s = presets.generation_settings(BUNDLED, llm, store)
    assert s.temperature == 0.1 and "END" in s.stop and "<|im_start|>" in s.stop
    s = presets.generation_settings(BUNDLED, llm, store, {"temperature": 1.2, "max_tokens": 5})
    assert (s.temperature, s.max_tokens) == (1.2, 5)
    # another model is not affected by this model's settings
    assert presets.generation_settings(Path("/x/other.gguf"), llm, store).temperature == 0.9
    presets.save_user_settings(store, "smollm2-135m-instruct", None)
    assert presets.generation_settings(BUNDLED, llm, store).temperature == 0.9


def test_model_keys_and_bad_settings() -> None:
    assert presets.model_key(BUNDLED) == "smollm2-135m-instruct"
    assert presets.model_key(Path("/x/mine.gguf")) == "mine.gguf"
    store = Store()
    with pytest.raises(TaraError, match=r"generation setting top_p for mine.gguf: .*use temperature"):
        presets.save_user_settings(store, "mine.gguf", {"top_p": 0})
    with pytest.raises(TaraError, match=r"generation setting beam for mine.gguf: unknown setting"):
        presets.save_user_settings(store, "mine.gguf", {"beam": 3})
    # a damaged stored value is ignored, not fatal
    store.values[presets.USER_KEY] = {"mine.gguf": {"temperature": "hot"}}
    assert presets.generation_settings(Path("/x/mine.gguf"), LlmSettings(), store).temperature == LlmSettings().temperature
