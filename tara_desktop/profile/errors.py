"""Errors of the encrypted profile; all are :class:`~tara_desktop.errors.ProfileError` (a TaraError)."""

from __future__ import annotations

from tara_desktop.errors import ProfileError

__all__ = [
    "ConsentError", "PassphraseChanged", "ProfileDiskFull", "ProfileError", "ProfileLocked", "ProfileReadOnly",
    "ProfileTampered", "RecordDamaged", "WeakPassphrase", "WrongPassphrase",
]


class ProfileLocked(ProfileError):
    """The profile needs a passphrase and none was given (no TARA_PASSPHRASE, no argument)."""


class NewProfileNeedsPassphrase(ProfileLocked):
    """There is no profile yet and it can only be protected by a passphrase (no OS keyring, or the person
    chose a passphrase): one must be chosen, and nothing can recover it later."""


class WrongPassphrase(ProfileError):
    """The passphrase does not unlock this profile. Nothing was changed."""


class WeakPassphrase(ProfileError):
    """A passphrase chosen for a new profile (or as a new passphrase) is too easy to guess; the message says
    why and what to choose instead. Nothing was created or changed."""


class RecordDamaged(ProfileError):
    """One record failed its integrity check (its bytes were changed or moved outside TARA).

    ``table`` and ``record_id`` name the record; every other record stays readable.
    """

    def __init__(self, message: str, *, table: str, record_id: int | str) -> None:
        super().__init__(message)
        self.table = table
        self.record_id = record_id


class ConsentError(ProfileError):
    """An unknown consent kind was named."""


class PassphraseChanged(WrongPassphrase):
    """The passphrase this window unlocked the profile with was changed by another TARA process: ask the
    user for the new one and open the profile again."""


class ProfileDiskFull(ProfileError):
    """The disk holding the profile is full; the change that hit it was rolled back."""


class ProfileReadOnly(ProfileError):
    """The profile (its folder, file or disk) cannot be written."""


class ProfileTampered(ProfileError):
    """The profile's contents disagree with its signed records (rolled back or edited outside TARA)."""
