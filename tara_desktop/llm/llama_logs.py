"""Keeping llama.cpp's own log lines (one per tensor while loading, warnings) off the terminal."""

from __future__ import annotations

import logging


def quiet_llama_logs() -> None:
    """llama-cpp-python routes llama.cpp's log through the ``llama-cpp-python`` logger; set it to ERROR
    (nothing below is printed) unless someone already chose a level for it."""
    llama_log = logging.getLogger("llama-cpp-python")
    if llama_log.level == logging.NOTSET:
        llama_log.setLevel(logging.ERROR)
