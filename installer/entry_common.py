"""Start-up shared by the bundled executables (installer/tara.spec).

A frozen executable is its own Python: ``sys.executable`` is the ``tara``/``tara-desktop`` program, not an
interpreter. The app starts helpers as ``[sys.executable, "-m", MODULE, ARGS...]`` (the training worker), so
each bundled program also understands ``-m MODULE ARGS...`` and runs that module as ``__main__``, exactly as
``python -m`` would. Nothing here is used outside the bundle.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Callable


def offline_defaults() -> None:
    """The bundle never reaches a model hub: every model it uses ships inside it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def windowed_streams() -> None:
    """A windowed program on Windows has no console: Python sets sys.stdout/sys.stderr to None, and any
    print would raise. Send them nowhere instead (the exit code still tells a caller the outcome)."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


def run(main: Callable[[], int | None]) -> None:
    offline_defaults()
    windowed_streams()
    if len(sys.argv) >= 3 and sys.argv[1] == "-m":
        module = sys.argv[2]
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        raise SystemExit(0)
    raise SystemExit(main())
