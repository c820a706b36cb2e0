"""The generation settings a model answers with.

Layers, each winning over the one before:

1. the app's settings shipped in ``configs/config.yaml`` (``llm.temperature``, ``llm.top_p``,
   ``llm.max_tokens``, ``llm.seed``) and the engine's defaults for the rest;
2. the model's **preset** from ``models/catalog.yaml`` (what that model was tuned to answer well with);
3. the user's own global settings: only the ``llm`` keys they changed themselves (Settings page);
4. the user's own settings for this one model (stored encrypted in the profile under
   :data:`USER_KEY`, keyed by catalog id, or file name for a model the catalog does not know);
5. the settings one request asks for (the API's ``temperature``, ``max_tokens``...).

Stop strings add up instead of replacing each other: a model's own stops (its turn markers) always apply.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tara_desktop.config import LlmSettings
from tara_desktop.errors import TaraError
from tara_desktop.llm.catalog import Catalog, CatalogModel, GenerationPreset, default_path, load_catalog
from tara_desktop.llm.generation import GenerationSettings

if TYPE_CHECKING:
    from tara_desktop.llm.library import SettingsStore

log = logging.getLogger(__name__)

USER_KEY = "models.generation"
"""Profile setting: ``{model key: {temperature, top_p, top_k, min_p, repeat_penalty, max_tokens, stop}}``."""
GLOBAL_KEY = "config.overrides"
"""Profile setting holding the user's own config.yaml overrides (the Settings page)."""
LLM_KEYS = ("temperature", "top_p", "max_tokens", "seed")
"""The ``llm`` settings of config.yaml that are generation settings."""


_cache_lock = threading.Lock()
_cache: dict[Path, tuple[tuple[int, int], Catalog]] = {}


def _catalog() -> Catalog | None:
    """The install's catalog, parsed once per change of the file (a turn must not re-read YAML)."""
    path = default_path()
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = (st.st_size, st.st_mtime_ns)
    with _cache_lock:
        hit = _cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    try:
        catalog = load_catalog(path)
    except TaraError as exc:
        log.warning("model presets unavailable: %s", exc)
        return None
    with _cache_lock:
        _cache[path] = (stamp, catalog)
    return catalog


def catalog_entry(model_path: Path, catalog: Catalog | None = None) -> CatalogModel | None:
    """The catalog entry for a model file (by its file name), if the catalog knows it."""
    catalog = catalog if catalog is not None else _catalog()
    return catalog.by_file(Path(model_path).name) if catalog is not None else None


def model_key(model_path: Path, catalog: Catalog | None = None) -> str:
    """The key a model's user settings are stored under: its catalog id, else its file name."""
    entry = catalog_entry(model_path, catalog)
    return entry.id if entry is not None else Path(model_path).name


def preset_for(model_path: Path, catalog: Catalog | None = None) -> GenerationPreset | None:
    entry = catalog_entry(model_path, catalog)
    return entry.preset if entry is not None else None


def user_settings(store: SettingsStore | None, key: str) -> GenerationPreset | None:
    """The user's own settings for one model (None when they set none, or the stored value is damaged)."""
    if store is None:
        return None
    raw = store.get_setting(USER_KEY) or {}
    value = raw.get(key) if isinstance(raw, Mapping) else None
    if not value:
        return None
    try:
        return GenerationPreset.model_validate(value)
    except ValidationError:
        log.warning("ignoring damaged generation settings stored for one model")
        return None


def save_user_settings(store: SettingsStore, key: str, values: Mapping[str, Any] | None) -> GenerationPreset | None:
    """Store (or with None / {} clear) the user's own settings for one model. Raises TaraError naming the
    bad key."""
    raw = store.get_setting(USER_KEY) or {}
    stored = dict(raw) if isinstance(raw, Mapping) else {}
    if not values:
        stored.pop(key, None)
        store.set_setting(USER_KEY, stored)
        return None
    try:
        preset = GenerationPreset.model_validate(dict(values))
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "(settings)"
        why = "unknown setting" if first["type"] == "extra_forbidden" else first["msg"].lower()
        raise TaraError(f"generation setting {name} for {key}: {why}; "
                        f"use {', '.join(GenerationPreset.model_fields)}") from None
    stored[key] = preset.values() | ({"stop": list(preset.stop)} if preset.stop is not None else {})
    store.set_setting(USER_KEY, stored)
    return preset


def _user_llm(store: SettingsStore | None) -> dict[str, Any]:
    if store is None:
        return {}
    raw = store.get_setting(GLOBAL_KEY) or {}
    llm = raw.get("llm") if isinstance(raw, Mapping) else None
    if not isinstance(llm, Mapping):
        return {}
    return {k: llm[k] for k in LLM_KEYS if k in llm}


def generation_settings(
    model_path: Path,
    llm: LlmSettings,
    store: SettingsStore | None = None,
    request: Mapping[str, Any] | None = None,
    *,
    catalog: Catalog | None = None,
) -> GenerationSettings:
    """The settings ``model_path`` answers with (see the module docstring for the layers)."""
    values: dict[str, Any] = {k: getattr(llm, k) for k in LLM_KEYS}
    stops: list[str] = []

    def lay(layer: Mapping[str, Any]) -> None:
        for k, v in layer.items():
            if k == "stop":
                stops.extend(s for s in v if s and s not in stops)
            else:
                values[k] = v

    preset = preset_for(model_path, catalog)
    if preset is not None:
        lay(preset.values())
    lay(_user_llm(store))
    mine = user_settings(store, model_key(model_path, catalog))
    if mine is not None:
        lay(mine.values())
    if request:
        lay(request)
    return GenerationSettings.from_llm_settings(llm, **values, stop=tuple(stops))


__all__ = [
    "USER_KEY",
    "catalog_entry",
    "generation_settings",
    "model_key",
    "preset_for",
    "save_user_settings",
    "user_settings",
]
