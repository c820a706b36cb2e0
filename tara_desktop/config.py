"""Typed loading of ``configs/``.

Every key is declared once here, with its type and default. An unknown key, a wrong type or a missing
file raises :class:`~tara_desktop.errors.ConfigError` naming the file, the key and what was expected.
A user's own overrides (stored encrypted in the profile) are merged over the shipped files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tara_desktop import paths
from tara_desktop.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, validate_assignment=True)


class AppSettings(_Strict):
    theme: Literal["system", "light", "dark"] = "system"
    font_size: int = Field(11, ge=6, le=40)


class LlmSettings(_Strict):
    context_size: int = Field(2048, ge=128, le=1_048_576)
    threads: int = Field(0, ge=0, le=512)
    batch_size: int = Field(256, ge=1, le=65_536)
    max_tokens: int = Field(256, ge=1, le=65_536)
    temperature: float = Field(0.7, ge=0.0, le=5.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    seed: int = -1
    memory_budget_mb: int = Field(0, ge=0)  # 0 = automatic: half of this computer's memory (llm/memory.py)
    idle_unload_seconds: float = Field(600, ge=0)


class RoutingSettings(_Strict):
    min_confidence: float = Field(0.35, ge=0.0, le=1.0)
    embedding_model: str = "all-MiniLM-L6-v2"


class VoiceSettings(_Strict):
    push_to_talk: str = "Ctrl+Space"
    input_device: str | int | None = None
    sample_rate: int = Field(16000, ge=8000, le=192_000)
    # Speech recognition: "auto" (Whisper base when installed, else the bundled Whisper tiny.en),
    # "whisper-tiny.en", "whisper-base", a SpeechBrain model id from models/voice_catalog.yaml, or a folder.
    asr_model: str = "auto"
    language: str = Field("en", pattern=r"^(auto|[a-z]{2,3})$")  # "auto" detects (multilingual model only)
    asr_beam_size: int = Field(5, ge=1, le=10)  # 5: measured WER 0.13 vs 0.19 greedy, same time
    asr_threads: int = Field(0, ge=0, le=64)  # 0 = up to 4, by the number of cores
    emotion_model: str = "speechbrain/emotion-recognition-wav2vec2-IEMOCAP"  # used once downloaded
    emotion_min_confidence: float = Field(0.6, ge=0.0, le=1.0)  # below this the reply's tone stays neutral
    # Reply voice: "auto"/"edge" = the online voice (Edge TTS) only while the "online_voice" consent is on,
    # else Piper (offline neural voice), then the system voice; "piper" = never online; "system".
    tts_engine: Literal["auto", "piper", "system", "edge"] = "auto"
    edge_tts_timeout_s: float = Field(4.0, gt=0)
    edge_tts_retry_after_s: float = Field(300.0, ge=0)
    speak_replies: bool = True
    asr_model_dir: str | None = None  # retired (the toy SpeechBrain model); ignored
    emotion_model_dir: str | None = None  # retired; ignored


class TrainingSettings(_Strict):
    max_samples: int = Field(2000, ge=1)
    lora_rank: int = Field(8, ge=1, le=1024)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    learning_rate: float = Field(2e-4, gt=0)
    epochs: int = Field(1, ge=1)
    save_every: int = Field(50, ge=1)


class AppConfig(_Strict):
    app: AppSettings = AppSettings()
    llm: LlmSettings = LlmSettings()
    routing: RoutingSettings = RoutingSettings()
    voice: VoiceSettings = VoiceSettings()
    training: TrainingSettings = TrainingSettings()


class Domain(_Strict):
    name: str
    description: str
    system_prompt: str
    voice: str
    calm_voice: str | None = None  # voice for a distressed person (sad/angry/fear); None = voice
    examples: list[str] = Field(min_length=1)


class DomainsFile(_Strict):
    domains: dict[str, Domain]


class ModelChoice(_Strict):
    model: str
    adapter: str | None = None
    adapter_scale: float = 1.0


class ModelMapping(_Strict):
    default: ModelChoice
    domains: dict[str, ModelChoice] = {}

    def for_domain(self, domain: str) -> ModelChoice:
        return self.domains.get(domain, self.default)


class Configs(BaseModel):
    """Everything in ``configs/``, typed."""

    app: AppConfig
    domains: dict[str, Domain]
    mapping: ModelMapping
    folder: Path


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; reinstall TARA or restore the file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}); check the file") from None


def _describe(error: ValidationError, path: Path, prefix: str = "") -> ConfigError:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if prefix:
        key = f"{prefix}.{key}" if key else prefix
    if first["type"] == "extra_forbidden":
        why = "unknown key (check the spelling; see tara_desktop/config.py for the keys)"
    elif first["type"] == "missing":
        why = "required key is missing"
    else:
        got = first.get("input")
        why = f"{first['msg'].lower()}, got {got!r}"
    return ConfigError(f"{path}: key {key or '(top level)'}: {why}")


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


RETIRED_KEYS = {"llm": ("demo_model",)}
"""Keys that older versions declared: dropped from a profile's saved settings instead of failing."""


def _without_retired(overrides: Mapping[str, Any]) -> Mapping[str, Any]:
    out = dict(overrides)
    for section, keys in RETIRED_KEYS.items():
        body = out.get(section)
        if isinstance(body, Mapping) and any(k in body for k in keys):
            out[section] = {k: v for k, v in body.items() if k not in keys}
    return out


def _yaml(text: str) -> Any:
    """Safe YAML with libyaml's C parser where PyYAML has it (about 15x faster than the pure-Python one:
    the domains file alone took 0.3 s to parse, a third of a `tara route`)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_app_config(path: Path, overrides: Mapping[str, Any] | None = None) -> AppConfig:
    """Load ``config.yaml``; ``overrides`` (the user's settings from the profile) win."""
    try:
        raw = _yaml(_read_text(path)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: key (top level): expected a mapping of sections, got {type(raw).__name__}")
    try:
        AppConfig.model_validate(raw)
    except ValidationError as exc:
        raise _describe(exc, path) from None
    merged = _deep_merge(raw, _without_retired(overrides or {}))
    try:
        return AppConfig.model_validate(merged)
    except ValidationError as exc:
        raise _describe(exc, Path("(your settings in the profile)")) from None


def load_domains(path: Path) -> dict[str, Domain]:
    try:
        raw = _yaml(_read_text(path)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__}); fix the syntax") from None
    if isinstance(raw, dict) and isinstance(raw.get("domains"), dict):
        for name, body in raw["domains"].items():
            if isinstance(body, dict):
                body.setdefault("name", name)
    try:
        parsed = DomainsFile.model_validate(raw)
    except ValidationError as exc:
        raise _describe(exc, path) from None
    if "general" not in parsed.domains:
        raise ConfigError(f"{path}: key domains.general: required (it is the fallback domain)")
    return parsed.domains


def load_model_mapping(path: Path, domains: Mapping[str, Domain] | None = None) -> ModelMapping:
    try:
        raw = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}); fix the syntax") from None
    try:
        mapping = ModelMapping.model_validate(raw)
    except ValidationError as exc:
        raise _describe(exc, path) from None
    if domains is not None:
        for name in mapping.domains:
            if name not in domains:
                raise ConfigError(
                    f"{path}: key domains.{name}: unknown domain; "
                    f"expected one of {', '.join(sorted(domains))}"
                )
    return mapping


def load_configs(folder: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Configs:
    """Load all of ``configs/`` (the install's, unless ``folder`` is given)."""
    folder = folder or paths.configs_dir()
    app = load_app_config(folder / "config.yaml", overrides)
    domains = load_domains(folder / "universal_domains.yaml")
    mapping = load_model_mapping(folder / "model_mapping.json", domains)
    return Configs(app=app, domains=domains, mapping=mapping, folder=folder)
