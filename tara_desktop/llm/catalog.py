"""The catalog of known models (``models/catalog.yaml``), loaded into typed objects.

An unknown key, a wrong type or a malformed sha256 is a :class:`~tara_desktop.errors.ConfigError` naming
the file and the key, like every other config file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tara_desktop import paths
from tara_desktop.errors import ConfigError, TaraError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class GenerationPreset(BaseModel):
    """A model's recommended sampling settings (every key optional: a missing one keeps the app's own
    setting from configs/config.yaml). A user's own per-model settings win over these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(None, ge=0.0, le=5.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, ge=0.5, le=3.0)
    max_tokens: int | None = Field(None, ge=1, le=65_536)
    stop: tuple[str, ...] | None = None

    def values(self) -> dict[str, object]:
        """The keys this preset sets, as GenerationSettings field values."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class CatalogModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    name: str
    file: str = Field(pattern=r"^[^/\\]+\.gguf$")
    bundled: bool = False
    architecture: str
    parameters: str
    quantization: str
    size_bytes: int | None = Field(None, gt=0)
    approx_size_mb: int | None = Field(None, gt=0)
    sha256: str | None = None
    ram_mb: int | None = Field(None, gt=0)  # published RAM need; informational (tara_desktop.llm.memory estimates)
    context_length: int | None = Field(None, gt=0)
    n_layers: int | None = Field(None, gt=0)
    n_embd: int | None = Field(None, gt=0)
    n_head_kv: int | None = Field(None, gt=0)
    head_dim: int | None = Field(None, gt=0)
    n_vocab: int | None = Field(None, gt=0)
    license: str
    domains: list[str] = Field(min_length=1)
    source: str | None = Field(None, pattern=r"^https?://\S+$")
    package: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """For a bundled model: the Python package (import name) that ships the file, where a source checkout
    finds it when models/ of the install does not hold it."""
    preset: GenerationPreset | None = None
    notes: str = ""

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().lower()
        if not _SHA256.match(v):
            raise ValueError("must be 64 hexadecimal digits or null")
        return v

    def weights_bytes(self) -> int | None:
        """The file size: exact when recorded, else the published approximate size."""
        if self.size_bytes:
            return self.size_bytes
        if self.approx_size_mb:
            return self.approx_size_mb * 1024 * 1024
        return None

    def kv_cache_bytes(self, n_ctx: int) -> int | None:
        """The f16 KV cache at ``n_ctx`` tokens (:mod:`tara_desktop.llm.memory`); None without the numbers."""
        from tara_desktop.llm import memory

        shape = memory.shape_from_catalog(self)
        return memory.kv_cache_bytes(shape, n_ctx) or None if shape is not None else None


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[CatalogModel]


class Catalog:
    """The known models, looked up by id or file name."""

    def __init__(self, models: list[CatalogModel], path: Path) -> None:
        self.models = models
        self.path = path

    def __iter__(self) -> Iterator[CatalogModel]:
        return iter(self.models)

    def find(self, name: str) -> CatalogModel | None:
        key = name.strip().lower()
        for m in self.models:
            if key in (m.id, m.file.lower(), m.name.lower()):
                return m
        return None

    def get(self, name: str) -> CatalogModel:
        found = self.find(name)
        if found is None:
            known = ", ".join(m.id for m in self.models)
            raise TaraError(f"no model called {name!r} in the catalog: choose one of {known}")
        return found

    def by_file(self, file_name: str) -> CatalogModel | None:
        for m in self.models:
            if m.file == file_name:
                return m
        return None


def default_path() -> Path:
    return paths.bundled_models_dir() / "catalog.yaml"


def load_catalog(path: Path | None = None, *, known_domains: set[str] | None = None) -> Catalog:
    """Load and check the catalog; ``known_domains`` (from the domains config) are checked when given."""
    path = path or default_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; reinstall TARA or restore the file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}); check the file") from None
    try:
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__}); fix the syntax") from None
    try:
        parsed = _CatalogFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int) and isinstance(raw, dict):
            entries = raw.get("models") or []
            if loc[1] < len(entries) and isinstance(entries[loc[1]], dict) and entries[loc[1]].get("id"):
                loc[1] = entries[loc[1]]["id"]
        key = ".".join(str(p) for p in loc) or "(top level)"
        if first["type"] == "extra_forbidden":
            why = "unknown key (see tara_desktop/llm/catalog.py for the keys)"
        elif first["type"] == "missing":
            why = "required key is missing"
        else:
            why = f"{first['msg'].lower()}, got {first.get('input')!r}"
        raise ConfigError(f"{path}: key {key}: {why}") from None
    seen: set[str] = set()
    for m in parsed.models:
        if m.id in seen:
            raise ConfigError(f"{path}: key models.{m.id}: the id appears twice; give each model its own id")
        seen.add(m.id)
        if not m.bundled and m.source is None:
            raise ConfigError(f"{path}: key models.{m.id}.source: required for a model that is not bundled")
        if known_domains is not None:
            for d in m.domains:
                if d not in known_domains:
                    raise ConfigError(
                        f"{path}: key models.{m.id}.domains: unknown domain {d!r}; "
                        f"expected some of {', '.join(sorted(known_domains))}"
                    )
    return Catalog(parsed.models, path)
