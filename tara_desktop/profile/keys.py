"""Where the key-encryption key (KEK) of a profile comes from: the OS keyring or a passphrase.

Passphrase strength (:func:`check_new_passphrase`) is checked where a person *chooses* a passphrase: typed
for a new profile (the ``tara`` prompt; ``Profile.open(..., check_new_passphrase=True)`` for the GUI's
dialog) and every new passphrase (``rotate-key``, ``TARA_NEW_PASSPHRASE``, ``Profile.rotate_key``). It is
refused when it is shorter than :data:`MIN_PASSPHRASE_CHARS` characters (NIST SP 800-63B's minimum for a
secret a person picks), uses fewer than four different characters, is all digits and shorter than 12, or
is one of the most common passwords. A passphrase a program hands over (``TARA_PASSPHRASE``,
``Profile.open(passphrase=...)``: scripts, CI, tests) is taken as given, and an existing profile always
opens with whatever passphrase it has.

* ``keyring``: a random 32-byte KEK stored in the OS keyring (Windows Credential Locker, macOS
  Keychain, Secret Service) under service ``TARA`` and the profile's id as user name. The stored secret
  is a small JSON object ``{"keks": {kek_id: base64}}`` so a key rotation can hold the old and the new
  KEK at once and a kill at any moment leaves a usable one.
* ``passphrase``: the KEK is scrypt(passphrase, salt); the salt and cost parameters sit in the clear
  ``keks`` table of the profile. ``TARA_PASSPHRASE`` or ``Profile.open(passphrase=...)`` supplies it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import threading
import unicodedata
from typing import TYPE_CHECKING, Any

from tara_desktop.profile import crypto
from tara_desktop.profile.errors import (
    NewProfileNeedsPassphrase,
    PassphraseChanged,
    ProfileError,
    ProfileLocked,
    WeakPassphrase,
)

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger(__name__)

KEYRING_SERVICE = "TARA"
SOURCES = ("keyring", "passphrase")


def keyring_backend() -> KeyringBackend | None:
    """The OS keyring backend when a real one exists, else None (fail/null backends, empty chainer)."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null

        backend = keyring.get_keyring()
    except Exception as exc:  # a broken keyring install must not stop the app
        log.info("no usable OS keyring: %s", type(exc).__name__)
        return None
    if isinstance(backend, fail.Keyring | null.Keyring):
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    return backend


def keyring_name() -> str | None:
    backend = keyring_backend()
    if backend is None:
        return None
    return f"{type(backend).__module__.removeprefix('keyring.backends.')}.{type(backend).__name__}"


def env_passphrase() -> str | None:
    value = os.environ.get("TARA_PASSPHRASE")
    return value if value else None


# scrypt is slow by design (~0.1 s, far more on a busy machine). A process that opens the same profile
# again (the GUI and a CLI action, a test reopening) reuses the derived KEK instead of paying it again.
# Keyed by a hash of salt, cost and passphrase: a wrong passphrase still misses and fails. This keeps no
# more in memory than the process already holds (the passphrase itself, the unwrapped data keys).
_KEK_CACHE: dict[bytes, bytes] = {}
_KEK_CACHE_LOCK = threading.Lock()


def _derive_cached(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    tag = crypto.sha256(b"%d/%d/%d/" % (n, r, p) + salt + b"/" + crypto.normalize_passphrase(passphrase))
    with _KEK_CACHE_LOCK:
        kek = _KEK_CACHE.get(tag)
    if kek is None:
        kek = crypto.derive_kek(passphrase, salt, n, r, p)
        with _KEK_CACHE_LOCK:
            if len(_KEK_CACHE) > 64:
                _KEK_CACHE.clear()
            _KEK_CACHE[tag] = kek
    return kek


def forget_derived_keys() -> None:
    """Drop every cached passphrase-derived KEK (after deleting a profile, or on lock)."""
    with _KEK_CACHE_LOCK:
        _KEK_CACHE.clear()


# The most common passwords of at least 8 characters (leaked-password lists): refused as passphrases.
_COMMON = frozenset({
    "password", "password1", "password123", "12345678", "123456789", "1234567890", "qwertyuiop", "qwerty123",
    "iloveyou", "11111111", "00000000", "abc12345", "passw0rd", "sunshine", "princess", "football", "baseball",
    "welcome1", "letmein1", "trustno1", "superman", "starwars", "whatever", "dragon12", "asdfghjk", "qwertyui",
    "1q2w3e4r", "zaq12wsx", "aa123456", "tara1234", "taradesktop",
})
MIN_PASSPHRASE_CHARS = 8


def check_new_passphrase(passphrase: str) -> None:
    """Refuse a new passphrase that is easy to guess (:class:`WeakPassphrase`), with one sentence saying
    what is wrong and what to choose instead (the rule is in the module docstring)."""
    text = unicodedata.normalize("NFC", passphrase)
    advice = "choose a few unrelated words, e.g. 'copper kettle river dawn' — it protects everything in the profile"
    if len(text) < MIN_PASSPHRASE_CHARS:
        raise WeakPassphrase(f"the passphrase is too short ({len(text)} characters); use at least "
                             f"{MIN_PASSPHRASE_CHARS}: {advice}")
    if len(set(text.casefold())) < 4:
        raise WeakPassphrase(f"the passphrase repeats too few different characters; {advice}")
    if text.casefold().replace(" ", "") in _COMMON or (text.isdigit() and len(text) < 12):
        raise WeakPassphrase(f"the passphrase is one of the most common passwords; {advice}")


def backoff_seconds(failures: int) -> float:
    """How long to wait before the next passphrase attempt after ``failures`` wrong ones in a row
    (0, 1, 2, 4, ... up to 30 s): the prompts (CLI and GUI) wait this long before trying again."""
    return 0.0 if failures <= 0 else float(min(2 ** (failures - 1), 30))


class KeySource:
    """Provides KEKs by id and makes new ones (for a new profile or a key rotation)."""

    kind: str = ""

    def kek(self, kek_id: str, params: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def new_kek(self) -> tuple[str, dict[str, Any], bytes]:
        """(kek id, clear params to store in the profile, KEK). Must be durable before it is used."""
        raise NotImplementedError

    def keep_only(self, kek_ids: set[str]) -> None:
        """Forget KEKs the profile no longer references (after a rotation)."""

    def destroy(self) -> None:
        """Forget every KEK of this profile (delete everything)."""

    def describe(self) -> str:
        return self.kind


class PassphraseSource(KeySource):
    kind = "passphrase"

    def __init__(self, passphrase: str) -> None:
        if not passphrase:
            raise ProfileLocked("an empty passphrase cannot protect the profile; choose a passphrase")
        self._passphrase = passphrase
        self._cache: dict[str, bytes] = {}

    def kek(self, kek_id: str, params: dict[str, Any]) -> bytes:
        if kek_id not in self._cache:
            try:
                salt = base64.b64decode(params["salt"])
                n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
            except (KeyError, ValueError, TypeError) as exc:
                raise ProfileError(
                    f"the passphrase settings of key {kek_id} in the profile are damaged; "
                    "restore the profile from a backup or export"
                ) from exc
            self._cache[kek_id] = _derive_cached(self._passphrase, salt, n, r, p)
        return self._cache[kek_id]

    def new_kek(self) -> tuple[str, dict[str, Any], bytes]:
        kek_id = secrets.token_hex(8)
        salt = os.urandom(16)
        n = crypto.scrypt_n()
        params = {
            "kdf": "scrypt",
            "salt": base64.b64encode(salt).decode("ascii"),
            "n": n,
            "r": crypto.SCRYPT_R,
            "p": crypto.SCRYPT_P,
        }
        self._cache[kek_id] = _derive_cached(self._passphrase, salt, n, crypto.SCRYPT_R, crypto.SCRYPT_P)
        return kek_id, params, self._cache[kek_id]

    def describe(self) -> str:
        return f"passphrase (scrypt n={crypto.scrypt_n()}, r={crypto.SCRYPT_R}, p={crypto.SCRYPT_P})"


class KeyringSource(KeySource):
    kind = "keyring"

    def __init__(self, profile_id: str) -> None:
        backend = keyring_backend()
        if backend is None:
            raise ProfileError(
                "this profile keeps its key in the OS keyring, but no keyring is available now; "
                "unlock or start your keyring service and try again"
            )
        self._backend: KeyringBackend = backend
        self._user = profile_id

    def _load(self) -> dict[str, str]:
        try:
            raw = self._backend.get_password(KEYRING_SERVICE, self._user)
        except Exception as exc:
            raise ProfileError(
                f"the OS keyring refused access to the profile key ({type(exc).__name__}); unlock the keyring "
                "and try again (a new profile can use a passphrase instead: set TARA_PASSPHRASE)"
            ) from exc
        if not raw:
            return {}
        try:
            data = json.loads(raw)
            keks = data["keks"]
            if not isinstance(keks, dict):
                raise TypeError("keks")
            return {str(k): str(v) for k, v in keks.items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise ProfileError(
                f"the OS keyring entry '{KEYRING_SERVICE}/{self._user}' is not a TARA profile key; "
                "it was changed outside TARA"
            ) from exc

    def _store(self, keks: dict[str, str]) -> None:
        value = json.dumps({"v": 1, "keks": keks}, sort_keys=True)
        try:
            self._backend.set_password(KEYRING_SERVICE, self._user, value)
        except Exception as exc:
            raise ProfileError(
                f"the OS keyring refused to store the profile key ({type(exc).__name__}); unlock the keyring, "
                "or use a passphrase with TARA_KEY_SOURCE=passphrase and TARA_PASSPHRASE"
            ) from exc

    def kek(self, kek_id: str, params: dict[str, Any]) -> bytes:
        keks = self._load()
        if kek_id not in keks:
            raise ProfileError(
                f"the key of this profile is not in the OS keyring (service {KEYRING_SERVICE}, user "
                f"{self._user}); without it the profile cannot be unlocked — use the keyring it was created with"
            )
        return base64.b64decode(keks[kek_id])

    def new_kek(self) -> tuple[str, dict[str, Any], bytes]:
        kek_id = secrets.token_hex(8)
        kek = os.urandom(32)
        keks = self._load()
        keks[kek_id] = base64.b64encode(kek).decode("ascii")
        self._store(keks)
        return kek_id, {"kdf": "keyring"}, kek

    def keep_only(self, kek_ids: set[str]) -> None:
        keks = self._load()
        kept = {k: v for k, v in keks.items() if k in kek_ids}
        if kept != keks and kept:
            self._store(kept)

    def destroy(self) -> None:
        try:
            self._backend.delete_password(KEYRING_SERVICE, self._user)
        except Exception as exc:
            # PasswordDeleteError when the entry is already gone: nothing left to destroy.
            log.info("keyring entry not deleted: %s", type(exc).__name__)

    def describe(self) -> str:
        return f"keyring ({keyring_name()})"


_CHANGED = (
    "the profile's passphrase was changed (by `tara profile rotate-key` or another TARA window); "
    "type the new passphrase to go on (nothing was changed)"
)


class UnavailableSource(KeySource):
    """A source this process cannot use (another process changed the passphrase): reopen the profile."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def kek(self, kek_id: str, params: dict[str, Any]) -> bytes:
        raise PassphraseChanged(_CHANGED)

    def new_kek(self) -> tuple[str, dict[str, Any], bytes]:
        raise PassphraseChanged(_CHANGED)


def choose_source_for_new_profile(
    profile_id: str, passphrase: str | None, requested: str | None, *, check_strength: bool = False
) -> KeySource:
    """Keyring when a real one exists, unless a passphrase was given or TARA_KEY_SOURCE says otherwise.

    ``check_strength``: ``passphrase`` was typed by a person for this new profile; refuse a weak one."""
    if passphrase and check_strength:
        check_new_passphrase(passphrase)
    requested = requested or os.environ.get("TARA_KEY_SOURCE") or None
    if requested is not None and requested not in SOURCES:
        raise ProfileError(f"unknown key source '{requested}'; use 'keyring' or 'passphrase'")
    passphrase = passphrase or env_passphrase()
    if requested == "keyring":
        if keyring_backend() is None:
            raise ProfileError(
                "no OS keyring is available for the profile key; start your keyring service, "
                "or set TARA_PASSPHRASE to protect the profile with a passphrase"
            )
        return KeyringSource(profile_id)
    if requested == "passphrase" or passphrase:
        if not passphrase:
            raise NewProfileNeedsPassphrase(
                "a passphrase is needed to create this profile; set TARA_PASSPHRASE or type one when asked"
            )
        return PassphraseSource(passphrase)
    if keyring_backend() is not None:
        return KeyringSource(profile_id)
    raise NewProfileNeedsPassphrase(
        "no OS keyring is available and no passphrase was given; set TARA_PASSPHRASE to protect the "
        "profile with a passphrase"
    )


def source_for_existing_profile(kind: str, profile_id: str, passphrase: str | None) -> KeySource:
    if kind == "keyring":
        return KeyringSource(profile_id)
    if kind == "passphrase":
        passphrase = passphrase or env_passphrase()
        if not passphrase:
            raise ProfileLocked(
                "this profile is locked with a passphrase; set TARA_PASSPHRASE or type it when asked"
            )
        return PassphraseSource(passphrase)
    raise ProfileError(f"the profile names an unknown key source '{kind}'; it was changed outside TARA")
