"""Errors a user can act on.

A :class:`TaraError` carries one sentence that says what was wrong and what to do.
The CLI prints it as ``error: <message>`` and exits 2; the GUI shows it in a message box.
"""

from __future__ import annotations


class TaraError(Exception):
    """Bad input or a state the user can fix. The message is shown to the user as is."""


class ConfigError(TaraError):
    """A config file is missing, unreadable, or has an unknown key or a wrong type."""


class ProfileError(TaraError):
    """The profile cannot be opened or unlocked, or one of its records failed its integrity check."""
