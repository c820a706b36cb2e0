"""The profile database and its keys: one SQLite file in WAL mode, every user value sealed.

What stays in clear: row ids, timestamps, key generations, consent kinds, blob kinds, pinned domain names,
the profile id, the key source and the scrypt salt/cost. Everything else is a sealed (Fernet) value.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tara_desktop.profile import crypto
from tara_desktop.profile.errors import (
    PassphraseChanged,
    ProfileDiskFull,
    ProfileError,
    ProfileReadOnly,
    RecordDamaged,
    WrongPassphrase,
)
from tara_desktop.profile.keys import KeySource

log = logging.getLogger(__name__)

DB_NAME = "profile.db"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keks (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, params TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS data_keys (
    gen INTEGER NOT NULL, kek_id TEXT NOT NULL, wrapped BLOB NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (gen, kek_id));
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    pinned_domain TEXT, gen INTEGER NOT NULL, data BLOB NOT NULL, ledger TEXT);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    created_at REAL NOT NULL, gen INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, id);
CREATE TABLE IF NOT EXISTS settings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, lookup BLOB NOT NULL UNIQUE, updated_at REAL NOT NULL,
    gen INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS consent (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, created_at REAL NOT NULL,
    gen INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS consent_by_kind ON consent (kind, id);
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, created_at REAL NOT NULL,
    gen INTEGER NOT NULL, info BLOB NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blobs_by_kind ON blobs (kind, id);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL, gen INTEGER NOT NULL,
    data BLOB NOT NULL, mac BLOB NOT NULL);
"""

# Meta values sealed like records (re-sealed by a key rotation).
SEALED_META = ("audit_head", "export_staging")

# Tables whose rows carry sealed values, with the key generation that sealed them.
SEALED_TABLES = ("conversations", "messages", "settings", "consent", "blobs", "audit")


def dumps(value: Any) -> bytes:
    """JSON bytes of a value; lone surrogates survive (surrogatepass) so no str can fail to store."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(
        "utf-8", "surrogatepass"
    )


def loads(data: bytes) -> Any:
    return json.loads(data.decode("utf-8", "surrogatepass"))


class UnknownGeneration(ProfileError):
    """A row names a key generation the profile does not have."""


def as_bytes(value: Any) -> bytes:
    """A sealed column's bytes, even if its storage type was changed to TEXT or a number."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("ascii")


def _read_only_disk(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):  # no statvfs on Windows
        return False


def db_error(exc: sqlite3.Error, path: Path) -> ProfileError:
    """The ProfileError a user can act on for an SQLite failure on the profile database ``path``."""
    text = str(exc).lower()
    folder = path.parent
    if "full" in text:
        return ProfileDiskFull(
            f"the disk holding the profile {folder} is full; free some space and try again "
            "(the change that did not fit was not saved)"
        )
    if "readonly" in text or "read-only" in text or _read_only_disk(folder):
        return ProfileReadOnly(
            f"the profile {folder} is read-only; TARA needs to write to it — make the folder and "
            f"{path.name} writable (or put the disk back in read-write mode), or choose another profile"
        )
    if "unable to open" in text or "disk i/o" in text or "authoriz" in text:
        for target, need in ((path, os.R_OK | os.W_OK), (folder, os.R_OK | os.W_OK | os.X_OK)):
            if target.exists() and not os.access(target, need):
                return ProfileReadOnly(
                    f"the profile {folder} cannot be read and written by you (permission denied on {target}); "
                    "fix its permissions or choose another profile"
                )
        return ProfileError(f"the profile database {path} cannot be opened or written ({exc}); check the disk")
    if "locked" in text or "busy" in text:
        return ProfileError("the profile is busy in another TARA process for too long; close it and try again")
    return ProfileError(f"the profile database {path} cannot be used ({exc}); it is damaged or not a TARA profile")


def connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise db_error(exc, path) from exc
    if str(mode).lower() != "wal":
        conn.close()
        raise ProfileError(f"the profile database {path} cannot use WAL mode; put the profile on a local disk")
    # NORMAL is durable against a crash or a kill of the app in WAL mode (the crash test shows it);
    # only a power cut may lose the last commits, never the database's consistency.
    # A value an attacker retyped to TEXT with invalid UTF-8 must fail that record's check, not the query.
    conn.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA temp_store = MEMORY")  # no temp files: sorts and temp tables stay in RAM
    conn.execute("PRAGMA secure_delete = ON")  # deleted records are overwritten with zeros
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class Vault:
    """The open database plus the unwrapped keys; all access goes through its lock."""

    def __init__(self, path: Path, conn: sqlite3.Connection, source: KeySource, profile_id: str) -> None:
        self.path = path
        self.conn = conn
        self.source = source
        self.profile_id = profile_id
        self.lock = threading.RLock()
        self.keys: dict[int, crypto.RecordKeys] = {}
        self.active_gen = 0
        self.closed = False
        self.pending_source: KeySource | None = None  # the source a rotation started here switches to
        self._after_commit: dict[object, Callable[[], None]] = {}

    def after_commit(self, callback: Callable[[], None], key: object = None) -> None:
        """Run ``callback`` once the current write transaction has committed (dropped on rollback); a
        later callback with the same ``key`` replaces an earlier one."""
        self._after_commit[object() if key is None else key] = callback

    # -- transactions -------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE): the key generation is re-read inside it, so rows
        written while another process rotates the key use the new generation."""
        with self.lock:
            self._check_open()
            if self.conn.in_transaction:  # nested in this thread's own write: join it
                yield self.conn
                return
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise db_error(exc, self.path) from exc
            try:
                gen = int(self.get_meta("active_gen") or 0)
                if gen != self.active_gen:
                    self.load_keys()
                    self.active_gen = gen
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                self._after_commit.clear()
                if self.conn.in_transaction:
                    try:
                        self.conn.execute("ROLLBACK")
                    except sqlite3.Error as rollback_exc:
                        log.info("rollback failed: %s", rollback_exc)
                if isinstance(exc, sqlite3.Error):
                    raise db_error(exc, self.path) from exc
                raise
            callbacks, self._after_commit = self._after_commit, {}
            for callback in callbacks.values():
                callback()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot (deferred transaction)."""
        with self.lock:
            self._check_open()
            if self.conn.in_transaction:  # inside this thread's own transaction: already consistent
                yield self.conn
                return
            try:
                self.conn.execute("BEGIN")
            except sqlite3.Error as exc:
                raise db_error(exc, self.path) from exc
            try:
                yield self.conn
            except sqlite3.Error as exc:
                raise db_error(exc, self.path) from exc
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT")

    def _check_open(self) -> None:
        if self.closed:
            raise ProfileError("the profile is closed; open it again")

    # -- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def sealed_meta(self, key: str) -> Any:
        """A meta value sealed like a record (None when absent); RecordDamaged when it was changed."""
        raw = self.get_meta(key)
        if raw is None:
            return None
        try:
            outer = json.loads(raw)
            gen, sealed = int(outer["gen"]), base64.b64decode(outer["sealed"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordDamaged(
                f"the profile record '{key}' failed its integrity check: it was changed outside TARA",
                table="meta", record_id=key,
            ) from exc
        return loads(self.open(f"meta/{key}", gen, sealed, f"the profile record '{key}'"))

    def set_sealed_meta(self, key: str, value: Any) -> str | None:
        """Store a JSON value sealed (bound to ``meta/<key>``); None removes it. Inside a write. Returns the
        stored text."""
        if value is None:
            self.set_meta(key, None)
            return None
        gen, sealed = self.seal(f"meta/{key}", dumps(value))
        raw = json.dumps({"gen": gen, "sealed": base64.b64encode(sealed).decode("ascii")})
        self.set_meta(key, raw)
        return raw

    def sealed_meta_gen(self, key: str) -> int | None:
        raw = self.get_meta(key)
        if raw is None:
            return None
        try:
            return int(json.loads(raw)["gen"])
        except (ValueError, KeyError, TypeError):
            return None

    # -- keys ---------------------------------------------------------------------------------
    def load_keys(self) -> None:
        """Unwrap every live key generation, from one consistent snapshot of the key tables (a key
        rotation committing meanwhile is seen whole or not at all). A wrong passphrase fails here and
        changes nothing; if this vault was unlocked before, it is PassphraseChanged: another process
        changed the passphrase."""
        with self.read():
            self._load_keys()

    def _load_keys(self) -> None:
        rows = self.conn.execute(
            "SELECT d.gen, d.kek_id, d.wrapped, k.params FROM data_keys d JOIN keks k ON k.id = d.kek_id "
            "WHERE k.source = ? ORDER BY d.gen, d.created_at",
            (self.source.kind,),
        ).fetchall()
        if not rows:
            raise ProfileError(
                f"the profile {self.path.parent} has no keys; it was changed outside TARA and cannot be unlocked"
            )
        found: dict[int, crypto.RecordKeys] = {}
        errors: list[Exception] = []
        for gen, kek_id, wrapped, params in rows:
            if gen in found:
                continue
            try:
                kek = self.source.kek(kek_id, json.loads(params))
                secret = crypto.unwrap_secret(kek, f"data_keys/{gen}", bytes(wrapped))
            except (ProfileError, crypto.IntegrityFailure) as exc:
                errors.append(exc)
                continue
            found[int(gen)] = crypto.RecordKeys(int(gen), secret)
        needed = {int(g) for (g,) in self.conn.execute("SELECT DISTINCT gen FROM data_keys")}
        if needed - set(found):
            pe = [e for e in errors if isinstance(e, ProfileError)]
            if pe:
                raise pe[0]
            if self.source.kind == "passphrase" and self.keys:
                raise PassphraseChanged(
                    "the profile's passphrase was changed (by `tara profile rotate-key` or another TARA window); "
                    "type the new passphrase to go on (nothing was changed)"
                )
            if self.source.kind == "passphrase":
                raise WrongPassphrase(
                    "wrong passphrase for this profile; check TARA_PASSPHRASE or the passphrase you typed "
                    "(nothing was changed)"
                )
            raise ProfileError(
                "the key in the OS keyring does not unlock this profile; it was changed outside TARA"
            )
        self.keys = found

    def keys_for(self, gen: int) -> crypto.RecordKeys:
        keys = self.keys.get(gen)
        if keys is None:
            self.load_keys()  # another process rotated the key meanwhile
            keys = self.keys.get(gen)
            if keys is None:
                raise UnknownGeneration(f"no key of generation {gen} exists in this profile; it was changed outside TARA")
        return keys

    @property
    def current(self) -> crypto.RecordKeys:
        return self.keys_for(self.active_gen)

    # -- sealing ------------------------------------------------------------------------------
    def seal(self, binding: str, payload: bytes) -> tuple[int, bytes]:
        keys = self.current
        return keys.gen, keys.seal(binding, payload)

    def open(self, binding: str, gen: int, sealed: bytes, what: str) -> bytes:
        """Open a sealed value; RecordDamaged names ``what`` (the table and id come from the binding)."""
        table, _, rest = binding.partition("/")
        record_id: int | str = int(rest.split("/")[0]) if rest.split("/")[0].isdigit() else rest
        try:
            try:
                keys = self.keys_for(int(gen))
            except (ValueError, TypeError, UnknownGeneration) as exc:
                raise crypto.IntegrityFailure("its key generation was changed") from exc
            return keys.open(binding, as_bytes(sealed))
        except crypto.IntegrityFailure as exc:
            raise RecordDamaged(
                f"{what} failed its integrity check: {exc} outside TARA; the other records are unaffected "
                "(delete this record or restore it from an export)",
                table=table,
                record_id=record_id,
            ) from exc

    def next_id(self, table: str) -> int:
        """The id the next row of an AUTOINCREMENT table gets (call inside a write transaction)."""
        seq = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        top = self.conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()
        return max(int(seq[0]) if seq else 0, int(top[0] or 0)) + 1

    def checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it, so replaced pages do not linger in -wal."""
        with self.lock:
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:  # another process is reading: try again later
                log.info("checkpoint postponed: %s", exc)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.checkpoint()
            self.conn.close()
            self.closed = True


def now() -> float:
    return time.time()
