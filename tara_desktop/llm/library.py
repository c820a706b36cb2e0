"""The user's models: GGUF files they added or downloaded, kept (encrypted) in the profile, and the list
that shows them beside the catalog with whether each fits this computer.

Files are linked, not copied: the library stores the path, the name, the sha256, the size and when it was
added. Removing a model from the library never deletes the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from tara_desktop import paths
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.llm import gguf_file
from tara_desktop.llm import memory as memory_model
from tara_desktop.llm.catalog import Catalog, CatalogModel
from tara_desktop.llm.gguf_info import GgufInfo
from tara_desktop.llm.gguf_reader import InvalidGguf
from tara_desktop.llm.model_check import validate_chat_model

log = logging.getLogger(__name__)

SETTING_KEY = "models.library"

Verdict = memory_model.Verdict


class SettingsStore(Protocol):
    """Where a profile keeps its (encrypted) settings: JSON values by key (``ProfileStore`` is one)."""

    def get_setting(self, key: str, default: Any = None) -> Any: ...
    def set_setting(self, key: str, value: Any) -> None: ...


class AuditTrail(Protocol):
    def append(self, event: str, details: dict[str, Any] | None = None) -> int: ...


class ProfileLike(Protocol):
    @property
    def store(self) -> SettingsStore: ...
    @property
    def audit(self) -> AuditTrail: ...


@dataclass(frozen=True)
class InstalledModel:
    name: str
    path: Path
    sha256: str
    size_bytes: int
    added_at: str
    origin: str = "added"  # "added" (tara models add) or "downloaded"
    catalog_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @classmethod
    def from_json(cls, d: Any) -> InstalledModel | None:
        try:
            return cls(
                name=str(d["name"]),
                path=Path(d["path"]),
                sha256=str(d["sha256"]),
                size_bytes=int(d["size_bytes"]),
                added_at=str(d["added_at"]),
                origin=str(d.get("origin", "added")),
                catalog_id=d.get("catalog_id"),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 120 or any(c in name for c in "\n\r\t"):
        raise TaraError("a model name must be 1 to 120 characters on one line: choose another name with --name")
    return name


class ModelLibrary:
    """The registered models of one profile."""

    def __init__(self, profile: ProfileLike) -> None:
        self._profile = profile

    def models(self) -> list[InstalledModel]:
        raw = self._profile.store.get_setting(SETTING_KEY, [])
        if not isinstance(raw, list):
            log.warning("the model library setting is not a list; ignoring it")
            return []
        out = []
        for item in raw:
            model = InstalledModel.from_json(item)
            if model is None:
                log.warning("skipping a malformed model library entry")
                continue
            out.append(model)
        return out

    def _save(self, models: list[InstalledModel]) -> None:
        self._profile.store.set_setting(SETTING_KEY, [m.to_json() for m in models])

    def find(self, name: str) -> InstalledModel | None:
        key = name.strip().lower()
        for m in self.models():
            if m.name.lower() == key:
                return m
        return None

    def get(self, name: str) -> InstalledModel:
        found = self.find(name)
        if found is None:
            names = ", ".join(m.name for m in self.models()) or "none yet"
            raise TaraError(f"no installed model is called {name!r} (installed: {names}): see `tara models list`")
        return found

    def add(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        catalog: Catalog | None = None,
        origin: str = "added",
        state: JobState | None = None,
    ) -> InstalledModel:
        """Validate a GGUF file and register it under ``name`` (default: the file name without .gguf).

        The file must pass the one validator every load goes through
        (:func:`~tara_desktop.llm.model_check.validate_chat_model`: a whole GGUF, its sha256 when the catalog
        knows it, and a chat model); otherwise its one-line error is raised and nothing is registered."""
        p = Path(path).expanduser()
        try:
            p = p.resolve(strict=True)
        except (FileNotFoundError, RuntimeError):
            raise TaraError(f"{path} does not exist: check the path") from None
        except OSError as exc:
            raise TaraError(f"{path} cannot be opened ({exc.strerror or exc}): check the path") from None
        entry = catalog.by_file(p.name) if catalog is not None else None
        expected = entry.sha256 if entry is not None else None
        info = validate_chat_model(p, expected_sha256=expected, state=state)
        digest = info.sha256 or gguf_file.sha256_file(p, state=state)
        final_name = _check_name(name if name is not None else p.stem)
        current = self.models()
        for m in current:
            if m.path == p:
                raise TaraError(f"{p} is already registered as {m.name!r}: nothing to do")
            if m.name.lower() == final_name.lower():
                raise TaraError(
                    f"a model called {m.name!r} is already registered ({m.path}): choose another name with --name"
                )
        model = InstalledModel(
            name=final_name,
            path=p,
            sha256=digest,
            size_bytes=info.size_bytes,
            added_at=datetime.now(UTC).isoformat(timespec="seconds"),
            origin=origin,
            catalog_id=entry.id if entry is not None else None,
        )
        self._save([*current, model])
        self._profile.audit.append(
            "model_import",
            {
                "name": model.name,
                "file": p.name,
                "sha256": digest,
                "size_bytes": model.size_bytes,
                "architecture": info.architecture,
                "origin": origin,
            },
        )
        return model

    def remove(self, name: str) -> InstalledModel:
        """Forget a model (the file stays where it is)."""
        model = self.get(name)
        self._save([m for m in self.models() if m.name != model.name])
        self._profile.audit.append("model_remove", {"name": model.name, "file": model.path.name, "sha256": model.sha256})
        return model


# ----------------------------------------------------------------------------- fit on this machine
# The estimate and the verdict are tara_desktop.llm.memory's (one memory model for the engine, the pool,
# the Models page and `tara models list`); these names keep the list's vocabulary.

Memory = memory_model.Machine
FitEstimate = memory_model.Fit


def judge_fit(
    need: memory_model.MemoryEstimate | None,
    *,
    budget_mb: float,
    memory: memory_model.Machine,
    download_bytes: int | None = None,
) -> memory_model.Fit:
    """The verdict for a model against this computer (memory, and disk for a download) and the budget."""
    return memory_model.judge(need, memory, budget_setting_mb=budget_mb, download_bytes=download_bytes)


def estimate_for_file(info: GgufInfo, n_ctx: int, n_batch: int = 256) -> memory_model.MemoryEstimate:
    return memory_model.estimate(memory_model.shape_from_gguf(info), n_ctx, n_batch)


def estimate_for_catalog(model: CatalogModel, n_ctx: int, n_batch: int = 256) -> memory_model.MemoryEstimate | None:
    return memory_model.estimate_catalog(model, n_ctx, n_batch)


def _unknown(reason: str) -> memory_model.Fit:
    return memory_model.Fit("unknown", "unknown", reason)


# ----------------------------------------------------------------------------- the list


@dataclass(frozen=True)
class ModelRow:
    name: str
    status: Literal["installed", "bundled", "available", "missing"]
    path: Path | None
    size_bytes: int | None
    fit: FitEstimate
    loaded: bool
    catalog_id: str | None = None
    license: str | None = None
    domains: tuple[str, ...] = ()
    quantization: str | None = None
    problem: str | None = None
    size_is_estimate: bool = False  # the catalog's published size, not a file on disk

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "path": str(self.path) if self.path else None,
            "size_bytes": self.size_bytes,
            "fit": self.fit.verdict,
            "fit_label": self.fit.label,
            "fit_reason": self.fit.reason,
            "need_bytes": self.fit.need_bytes,
            "fits_computer": self.fit.fits_computer,
            "within_budget": self.fit.within_budget,
            "loaded": self.loaded,
            "catalog_id": self.catalog_id,
            "license": self.license,
            "domains": list(self.domains),
            "quantization": self.quantization,
            "problem": self.problem,
            "size_is_estimate": self.size_is_estimate,
        }


def list_models(
    library: ModelLibrary | None,
    catalog: Catalog,
    *,
    n_ctx: int,
    budget_mb: float,
    n_batch: int = 256,
    loaded: Collection[Path] = (),
    memory: Memory | None = None,
    models_dir: Path | None = None,
) -> list[ModelRow]:
    """Installed models (the user's, then bundled ones), then catalog models not installed yet."""
    memory = memory or Memory.now(paths.user_models_dir(paths.profile_dir()))
    loaded_set = {Path(p).resolve() for p in loaded}
    rows: list[ModelRow] = []
    installed_files: set[str] = set()

    def describe_file(path: Path) -> tuple[GgufInfo | None, str | None]:
        try:
            return gguf_file.inspect(path), None
        except InvalidGguf as exc:
            return None, str(exc)

    for m in library.models() if library is not None else []:
        entry = catalog.find(m.catalog_id) if m.catalog_id else catalog.by_file(m.path.name)
        info, problem = describe_file(m.path)
        if info is not None:
            fit = judge_fit(estimate_for_file(info, n_ctx, n_batch), budget_mb=budget_mb, memory=memory)
        else:
            fit = _unknown("the file is missing or damaged")
        installed_files.add(m.path.name)
        rows.append(ModelRow(
            name=m.name,
            status="installed" if info is not None else "missing",
            path=m.path,
            size_bytes=info.size_bytes if info is not None else m.size_bytes,
            fit=fit,
            loaded=m.path.resolve() in loaded_set,
            catalog_id=entry.id if entry else None,
            license=entry.license if entry else None,
            domains=tuple(entry.domains) if entry else (),
            quantization=info.quantization if info is not None else None,
            problem=problem,
        ))
    for entry in catalog:
        if entry.file in installed_files:
            continue
        path = bundled_file(entry, models_dir) if entry.bundled else None
        if path is not None:
            info, problem = describe_file(path)
            fit = (judge_fit(estimate_for_file(info, n_ctx, n_batch), budget_mb=budget_mb, memory=memory)
                   if info is not None else _unknown("the file is damaged"))
            rows.append(ModelRow(
                name=entry.id, status="bundled", path=path,
                size_bytes=info.size_bytes if info is not None else None, fit=fit,
                loaded=path.resolve() in loaded_set, catalog_id=entry.id, license=entry.license,
                domains=tuple(entry.domains), quantization=info.quantization if info is not None else entry.quantization,
                problem=problem,
            ))
            continue
        fit = judge_fit(estimate_for_catalog(entry, n_ctx, n_batch), budget_mb=budget_mb, memory=memory,
                        download_bytes=None if entry.bundled else entry.weights_bytes())
        rows.append(ModelRow(
            name=entry.id, status="missing" if entry.bundled else "available", path=None,
            size_bytes=entry.size_bytes or entry.weights_bytes(), fit=fit, loaded=False,
            size_is_estimate=entry.size_bytes is None,
            catalog_id=entry.id, license=entry.license, domains=tuple(entry.domains),
            quantization=entry.quantization,
            problem=missing_bundled_message(entry, models_dir) if entry.bundled else None,
        ))
    return rows


def bundled_file(entry: CatalogModel, models_dir: Path | None = None) -> Path | None:
    """Where a bundled model's file is: ``models/`` of the install (the installer copies it there), else the
    registry package that ships it (a source checkout, set up by scripts/setup). None when neither has it."""
    candidates = [(models_dir or paths.bundled_models_dir()) / entry.file]
    if entry.package:
        package = paths.package_dir(entry.package)
        if package is not None:
            candidates.append(package / entry.file)
    for path in candidates:
        if path.is_file():
            return path
    return None


def _alternatives(entry: CatalogModel) -> str:
    return "or download another model on the Models page (`tara models list`, `tara models download ID`)"


def missing_bundled_message(entry: CatalogModel, models_dir: Path | None = None) -> str:
    where = str(models_dir or paths.bundled_models_dir())
    if entry.package:
        where += f" or the {entry.package} package"
    return (f"the bundled chat model {entry.file} is missing (looked in {where}): reinstall TARA "
            f"(in a source checkout run scripts/setup), {_alternatives(entry)}")


def bundled_problem(entry: CatalogModel, path: Path) -> str | None:
    """A cheap check of a bundled model's file (its recorded size, then its GGUF header); None when it
    looks whole. A file of the right size with flipped bytes is caught by ``tara gguf validate``."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"the bundled chat model {path} cannot be read ({exc.strerror or exc}): reinstall TARA, {_alternatives(entry)}"
    if entry.size_bytes is not None and size != entry.size_bytes:
        return (f"the bundled chat model {path} is damaged ({size:,} bytes, expected {entry.size_bytes:,}): "
                f"reinstall TARA, {_alternatives(entry)}")
    try:
        gguf_file.inspect(path)
    except InvalidGguf as exc:
        return f"the bundled chat model {path} is damaged ({exc}): reinstall TARA, {_alternatives(entry)}"
    return None


def check_bundled(catalog: Catalog, models_dir: Path | None = None) -> str | None:
    """What is wrong with the bundled chat model(s), in one line for a message box; None when all is well."""
    for entry in catalog:
        if not entry.bundled:
            continue
        path = bundled_file(entry, models_dir)
        if path is None:
            return missing_bundled_message(entry, models_dir)
        problem = bundled_problem(entry, path)
        if problem is not None:
            return problem
    return None


def installed_model_files(library: ModelLibrary | None, catalog: Catalog | None,
                          models_dir: Path | None = None) -> list[tuple[str, Path]]:
    """(label, file) of every model on this computer, the bundled ones first: what the Training tab
    offers as a base."""
    out: list[tuple[str, Path]] = []
    for entry in catalog or ():
        if entry.bundled:
            path = bundled_file(entry, models_dir)
            if path is not None:
                out.append((f"{entry.name} (bundled)", path))
    for m in library.models() if library is not None else []:
        if m.path.is_file() and all(m.path != p for _, p in out):
            out.append((m.name, m.path))
    return out


def default_chat_model() -> Path:
    """The model the shipped mapping answers with (the bundled chat model): in ``models/`` of the install,
    or in the registry package that ships it (a source checkout). Raises TaraError saying what to do when
    it is missing or damaged."""
    from tara_desktop.config import load_configs
    from tara_desktop.llm.catalog import load_catalog

    return resolve_model(load_configs().mapping.default.model, None, load_catalog())


def resolve_model(
    ref: str, library: ModelLibrary | None, catalog: Catalog | None, *, models_dir: Path | None = None
) -> Path:
    """The file for ``ref``: a path to a file, a registered model's name, a bundled model's id or file name,
    or a downloaded catalog model. Raises TaraError saying what to do when none of them matches."""
    as_path = Path(ref).expanduser()
    if as_path.is_file():
        return as_path.resolve()
    if library is not None:
        found = library.find(ref)
        if found is not None:
            if not found.path.is_file():
                raise TaraError(
                    f"the model {found.name!r} was registered from {found.path}, which is gone: "
                    "put the file back or `tara models remove` it"
                )
            return found.path
    entry = catalog.find(ref) if catalog is not None else None
    if entry is not None:
        if entry.bundled:
            bundled = bundled_file(entry, models_dir)
            if bundled is None:
                raise TaraError(missing_bundled_message(entry, models_dir))
            problem = bundled_problem(entry, bundled)
            if problem is not None:
                raise TaraError(problem)
            return bundled
        if library is not None:
            for m in library.models():
                if m.catalog_id == entry.id or m.path.name == entry.file:
                    if m.path.is_file():
                        return m.path
        raise TaraError(f"{entry.id} is not downloaded yet: run `tara models download {entry.id}`")
    if as_path.suffix.lower() == ".gguf" or os.sep in ref or "/" in ref:
        raise TaraError(f"{ref} does not exist: check the path")
    raise TaraError(f"no model called {ref!r}: give a .gguf path or a name from `tara models list`")
