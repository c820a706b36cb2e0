"""The user's model mapping: which model (and LoRA adapter) answers each domain.

The shipped mapping is ``configs/model_mapping.json``; the user's own per-domain choices (an export, the
Models page, the welcome page) are stored encrypted in the profile under :data:`MAPPING_KEY` and laid
over it by :func:`merge_mapping`. The running app's one owner of the mapping is
:class:`~tara_desktop.assistant.Assistant` (it swaps it in place); this module is what every writer and
reader of the stored choices shares.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tara_desktop import paths
from tara_desktop.config import ModelChoice, ModelMapping
from tara_desktop.errors import TaraError

if TYPE_CHECKING:
    from tara_desktop.profile.store import ProfileStore

log = logging.getLogger(__name__)

MAPPING_KEY = "model_mapping.overrides"  # domain -> {"model", "adapter", "adapter_scale"}


def stored_choices(store: ProfileStore) -> dict[str, dict[str, Any]]:
    """The user's per-domain choices as stored (domain -> {"model", "adapter", "adapter_scale"})."""
    value = store.get_setting(MAPPING_KEY) or {}
    return {k: dict(v) for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) else {}


def merge_mapping(base: ModelMapping, overrides: dict[str, Any] | None) -> ModelMapping:
    """The shipped mapping with the user's per-domain choices (exports, Models page) laid over it."""
    if not overrides:
        return base
    domains = dict(base.domains)
    default = base.default
    for name, choice in overrides.items():
        if not isinstance(choice, dict):
            continue
        try:
            parsed = ModelChoice.model_validate(choice)
        except ValueError:
            log.warning("ignoring a damaged model mapping override for one domain")
            continue
        if name == "default":
            default = parsed
        else:
            domains[name] = parsed
    return ModelMapping(default=default, domains=domains)


def resolve_adapter_file(name: str, profile_dir: Path) -> Path:
    """Find a LoRA adapter named in a mapping: an absolute path, the user's models folder, then the
    bundled ``models/adapters`` folder."""
    candidate = Path(name).expanduser()
    search = [candidate] if candidate.is_absolute() else [
        paths.user_models_dir(profile_dir) / candidate,
        paths.user_models_dir(profile_dir) / "adapters" / candidate,
        paths.bundled_models_dir() / "adapters" / candidate,
        paths.bundled_models_dir() / candidate,
    ]
    for path in search:
        if path.is_file():
            return path
    raise TaraError(
        f"adapter file {name!r} was not found (looked in {', '.join(str(p.parent) for p in search)}); "
        "export the domain's adapter again or fix the model mapping"
    )
