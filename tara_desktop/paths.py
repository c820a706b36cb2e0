"""Where things live: the user's profile directory and the installed resources."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "TARA"


def install_root() -> Path:
    """The folder holding ``configs/``, ``models/`` and ``resources/``.

    A source checkout uses the project root; a PyInstaller bundle its unpack folder;
    ``TARA_INSTALL_DIR`` overrides both.
    """
    env = os.environ.get("TARA_INSTALL_DIR")
    if env:
        return Path(env).resolve()
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle)
    return Path(__file__).resolve().parent.parent


def configs_dir() -> Path:
    return install_root() / "configs"


def bundled_models_dir() -> Path:
    return install_root() / "models"


def package_dir(name: str) -> Path | None:
    """The folder of an installed Python package, found without importing it (importing a model-data
    package may import its unrelated dependencies); None when it is not installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        return Path(location)
    return None


def resources_dir() -> Path:
    return install_root() / "resources"


def profile_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The profile directory: ``--profile DIR``, else ``TARA_HOME``, else the OS's per-user data folder
    (``%APPDATA%\\TARA`` on Windows)."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("TARA_HOME")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False, roaming=True))


def user_models_dir(profile: Path) -> Path:
    """Models the user added or downloaded live beside the profile data."""
    return profile / "models"
