"""``Profile``: one user's encrypted profile directory, opened (and created when missing) in one call."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sqlite3
import stat
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tara_desktop import paths
from tara_desktop.files import describe_os_error
from tara_desktop.jobs import JobState
from tara_desktop.profile import crypto, keys, ledger
from tara_desktop.profile.audit import AuditTrail, open_head
from tara_desktop.profile.consent import Consent
from tara_desktop.profile.errors import ProfileError, ProfileLocked, ProfileReadOnly, RecordDamaged
from tara_desktop.profile.store import ProfileStore
from tara_desktop.profile.vault import DB_NAME, SCHEMA, SCHEMA_VERSION, Vault, connect, db_error, now

if TYPE_CHECKING:
    from tara_desktop.profile.integrity import IntegrityReport

log = logging.getLogger(__name__)

DB_SUFFIXES = ("", "-wal", "-shm", "-journal")


def _initialized(conn: sqlite3.Connection) -> bool:
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return False
    return conn.execute("SELECT 1 FROM meta WHERE key = 'profile_id'").fetchone() is not None


# SQLite ``PRAGMA application_id`` of a TARA profile ("TARA" in ASCII); set when the profile is made and
# on the first open of a profile made before it existed.
APPLICATION_ID = 0x54415241


def identify(db: Path) -> str:
    """What ``db`` is, without changing a byte of it: "new" (absent or empty), "tara", or raise
    ProfileError saying it is foreign, damaged or unreadable (the file is left untouched)."""
    try:
        st = db.stat()
    except FileNotFoundError:
        return "new"
    except OSError as exc:
        raise ProfileError(f"the profile database {db} cannot be reached: {describe_os_error(exc)}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ProfileError(f"{db} is not a file; choose another profile folder")
    if st.st_size == 0 and not Path(f"{db}-wal").exists():
        return "new"
    try:
        with open(db, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise ProfileError(f"the profile database {db} cannot be read: {describe_os_error(exc)}") from exc
    untouched = "TARA left it untouched; choose another profile folder (--profile or TARA_HOME)"
    if not header.startswith(b"SQLite format 3\x00"):
        raise ProfileError(f"the profile database {db} is damaged or not a TARA profile; {untouched}")
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            ours = app_id == APPLICATION_ID or (app_id == 0 and _initialized(conn))
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ProfileError(f"the profile database {db} is damaged or not a TARA profile ({exc}); {untouched}") from exc
    if not ours:
        raise ProfileError(f"{db} is an SQLite database of another program, not a TARA profile; {untouched}")
    return "tara"


def _default_dir() -> Path:
    """TARA's own per-user data folder (what ``paths.profile_dir`` gives without overrides)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(paths.APP_NAME, appauthor=False, roaming=True))


def _is_profile(db: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return _initialized(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False


def _read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def _restrict(path: Path, mode: int) -> None:
    if os.name == "posix":
        try:
            os.chmod(path, mode)
        except OSError:
            pass


class Profile:
    """The user's encrypted profile: ``store``, ``consent``, ``audit``; export, rotate, delete, status."""

    def __init__(self, directory: Path, vault: Vault) -> None:
        self.dir = directory
        self._vault = vault
        self.store = ProfileStore(vault)
        self.audit = AuditTrail(vault)
        self.consent = Consent(vault, self.store, self.audit)

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        profile_dir: Path | None = None,
        *,
        passphrase: str | None = None,
        key_source: str | None = None,
        create: bool = True,
        finish_rotation: bool = True,
        check_new_passphrase: bool = False,
    ) -> Profile:
        """Open the profile in ``profile_dir`` (default: ``paths.profile_dir()``), creating it if missing.

        The key comes from the OS keyring, or from ``passphrase`` / ``TARA_PASSPHRASE``. A new profile uses
        the keyring when one exists, unless a passphrase is given or ``key_source`` / ``TARA_KEY_SOURCE``
        says "passphrase". Raises ProfileError (ProfileLocked, WrongPassphrase) with a clear sentence.
        An interrupted key rotation is finished on open unless ``finish_rotation`` is False (records stay
        readable meanwhile: each names the key generation that sealed it).
        ``check_new_passphrase``: ``passphrase`` was typed by a person (the GUI's dialog); when it creates the
        profile, a weak one is refused with :class:`WeakPassphrase` and nothing is created (an existing
        profile opens with whatever passphrase it has).
        """
        try:
            directory = paths.profile_dir(profile_dir)
        except (RuntimeError, OSError) as exc:  # pathlib's resolve() on a symbolic link loop
            what = describe_os_error(exc) if isinstance(exc, OSError) else f"{exc}: a symbolic link loop"
            raise ProfileError(
                f"the profile folder cannot be used ({what}); point --profile or TARA_HOME at a real folder"
            ) from exc
        db = directory / DB_NAME
        if not db.exists() and not create:
            raise ProfileError(f"there is no TARA profile in {directory}; check --profile or TARA_HOME")
        if directory.exists() and not directory.is_dir():
            raise ProfileError(f"{directory} is a file, not a folder; choose another profile folder")
        made_dir = not directory.exists()
        # The profile owns its folder (delete removes all of it) when it made it, found it empty, or it
        # is TARA's own per-user data folder; never a folder the user had filled with other things.
        owns_dir = made_dir or not any(directory.iterdir()) or directory == _default_dir()
        made_db = identify(db) == "new"
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ProfileError(
                f"the profile folder {directory} cannot be created: {describe_os_error(exc)}"
            ) from exc
        try:
            conn = connect(db)
            _restrict(db, 0o600)
            try:
                vault = cls._create(conn, db, passphrase, key_source, owns_dir,
                                    check_strength=check_new_passphrase)
                if vault is None:
                    vault = cls._unlock(conn, db, passphrase, finish_rotation)
            except sqlite3.Error as exc:
                conn.close()
                raise db_error(exc, db) from exc
            except BaseException:
                conn.close()
                raise
        except BaseException:
            if made_db and not _is_profile(db):  # a failed creation leaves nothing behind
                for suffix in DB_SUFFIXES:
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                if made_dir and not any(directory.iterdir()):
                    directory.rmdir()
            raise
        profile = cls(directory, vault)
        profile._ensure_ledger()
        profile._clean_stale_exports()
        return profile

    def _ensure_ledger(self) -> None:
        """Start the signed ledger of a new profile, or of one made before it existed."""
        v = self._vault
        try:
            with v.read():
                if ledger.load(v) is not None:
                    return
            with v.write():
                head = open_head(v)
                ledger.initialise(v, int(head["count"]) if head else 0, str(head["last_hash"]) if head else "")
        except RecordDamaged as exc:
            log.warning("the profile ledger cannot be read: %s", exc.table)
        except ProfileReadOnly as exc:
            log.info("ledger not started on a read-only profile: %s", exc)

    def verify_integrity(self) -> IntegrityReport:
        """Everything the profile can check about itself (``tara profile audit-verify``)."""
        from tara_desktop.profile.integrity import check

        return check(self)

    def _clean_stale_exports(self) -> None:
        from tara_desktop.profile.export import clean_stale_exports

        try:
            clean_stale_exports(self)
        except (ProfileError, OSError) as exc:  # a leftover to retry next time, never a reason not to open
            log.warning("stale export staging not removed: %s", exc)

    @staticmethod
    def _create(
        conn: sqlite3.Connection, db: Path, passphrase: str | None, key_source: str | None, owns_dir: bool,
        *, check_strength: bool = False,
    ) -> Vault | None:
        """Create the profile if the database is new; None if it already is a profile."""
        if _initialized(conn):
            return None
        profile_id = secrets.token_hex(16)
        source = keys.choose_source_for_new_profile(profile_id, passphrase, key_source, check_strength=check_strength)
        vault = Vault(db, conn, source, profile_id)
        with vault.lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if _initialized(conn):  # another process created it meanwhile
                    conn.execute("ROLLBACK")
                    return None
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                kek_id, params, kek = source.new_kek()
                secret = crypto.new_secret()
                at = now()
                conn.execute("INSERT INTO keks (id, source, params, created_at) VALUES (?, ?, ?, ?)",
                             (kek_id, source.kind, json.dumps(params), at))
                conn.execute("INSERT INTO data_keys (gen, kek_id, wrapped, created_at) VALUES (1, ?, ?, ?)",
                             (kek_id, crypto.wrap_secret(kek, "data_keys/1", secret), at))
                for key, value in {
                    "schema_version": str(SCHEMA_VERSION), "profile_id": profile_id, "key_source": source.kind,
                    "active_gen": "1", "created_at": str(at), "owns_dir": "1" if owns_dir else "0",
                }.items():
                    vault.set_meta(key, value)
                vault.keys = {1: crypto.RecordKeys(1, secret)}
                vault.active_gen = 1
                AuditTrail(vault).append_in_transaction("profile.created", {"key_source": source.kind})
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        log.info("created a profile (%s key)", source.kind)
        return vault

    @staticmethod
    def _unlock(conn: sqlite3.Connection, db: Path, passphrase: str | None, finish_rotation: bool) -> Vault:
        meta = _read_meta(conn)
        if int(meta.get("schema_version", "0")) > SCHEMA_VERSION:
            raise ProfileError(f"the profile in {db.parent} was made by a newer TARA; update TARA to open it")
        source = keys.source_for_existing_profile(meta.get("key_source", ""), meta["profile_id"], passphrase)
        vault = Vault(db, conn, source, meta["profile_id"])
        with vault.lock, vault.read():
            # The meta and the keys from one snapshot: a key rotation committing meanwhile (another
            # process) is seen whole or not at all.
            meta = _read_meta(conn)
            if meta.get("key_source", "") != source.kind:  # a rotation moved the key meanwhile
                source = keys.source_for_existing_profile(meta.get("key_source", ""), meta["profile_id"], passphrase)
                vault.source = source
            vault.load_keys()  # a wrong passphrase stops here, before anything is written
            vault.active_gen = int(meta.get("active_gen", "1"))
        from tara_desktop.profile import rotation

        if int(conn.execute("PRAGMA application_id").fetchone()[0]) != APPLICATION_ID:
            try:  # a profile made before the mark existed
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            except sqlite3.OperationalError as exc:
                log.info("profile not marked: %s", exc)
        try:
            ledger.ensure_schema(conn)  # a profile made before conversations had a ledger
        except sqlite3.OperationalError as exc:
            log.info("ledger column not added (read-only profile?): %s", exc)
        if meta.get("rotation"):
            if not finish_rotation:
                return vault
            try:
                rotation.resume(vault)
            except RecordDamaged as exc:
                log.warning("an interrupted key rotation cannot finish yet: %s", exc.table)
        else:
            referenced = {str(k) for (k,) in conn.execute("SELECT id FROM keks")}
            source.keep_only(referenced)  # drop a KEK left in the keyring by a rotation killed early
            if source.kind == "passphrase":
                try:
                    _upgrade_kdf(vault)
                except ProfileReadOnly as exc:
                    log.info("passphrase key not upgraded on a read-only profile: %s", exc)
        return vault

    def unlock_again(self, passphrase: str) -> None:
        """After PassphraseChanged: unlock this open profile with the new passphrase (WrongPassphrase if it
        is not the new one either; the profile stays as it was)."""
        v = self._vault
        with v.lock:
            old_source, old_keys = v.source, v.keys
            v.source, v.keys = keys.PassphraseSource(passphrase), {}
            try:
                v.load_keys()
            except BaseException:
                v.source, v.keys = old_source, old_keys
                raise
            with v.read():
                v.active_gen = int(v.get_meta("active_gen") or v.active_gen)

    # -- properties ---------------------------------------------------------------------------
    @property
    def profile_id(self) -> str:
        return self._vault.profile_id

    @property
    def key_source(self) -> str:
        """"keyring" or "passphrase"."""
        return self._vault.source.kind

    @property
    def database(self) -> Path:
        return self._vault.path

    # -- operations ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        v = self._vault
        with v.read():
            rotation = v.get_meta("rotation")
            created = v.get_meta("created_at")
        files = [Path(f"{v.path}{s}") for s in DB_SUFFIXES]
        return {
            "dir": str(self.dir),
            "database": str(v.path),
            "profile_id": v.profile_id,
            "key_source": v.source.kind,
            "key_source_detail": v.source.describe(),
            "key_generation": v.active_gen,
            "rotation_in_progress": rotation is not None,
            "created_at": float(created) if created else None,
            "size_bytes": sum(f.stat().st_size for f in files if f.exists()),
            "counts": self.store.counts(),
            "consent": {k: {"granted": s.granted, "chosen": s.chosen, "at": s.at} for k, s in self.consent.all().items()},
        }

    def export(self, out: Path | str, state: JobState | None = None) -> dict[str, Any]:
        """Write everything, decrypted, to OUT (a folder, or a .zip); audited. Returns a summary."""
        from tara_desktop.profile.export import export_profile

        return export_profile(self, Path(out), state)

    def rotate_key(
        self, state: JobState | None = None, *, key_source: str | None = None, new_passphrase: str | None = None
    ) -> int:
        """Re-encrypt everything under a new key; returns the new key generation.

        ``new_passphrase`` changes the passphrase; ``key_source`` ("keyring" or "passphrase") moves the key
        to the OS keyring or to a passphrase. Until the rotation ends, the old and the new secret both
        unlock the profile; afterwards only the new one does.
        """
        from tara_desktop.profile.rotation import rotate_key

        current = self._vault.source
        target: keys.KeySource | None = None
        if key_source is not None and key_source not in keys.SOURCES:
            raise ProfileError(f"unknown key source '{key_source}'; use 'keyring' or 'passphrase'")
        if key_source == "keyring":
            if new_passphrase:
                raise ProfileError("a new passphrase goes with the passphrase key source, not the keyring")
            target = current if current.kind == "keyring" else keys.KeyringSource(self.profile_id)
        elif new_passphrase is not None:
            keys.check_new_passphrase(new_passphrase)
            target = keys.PassphraseSource(new_passphrase)
        elif key_source == "passphrase" and current.kind != "passphrase":
            raise ProfileLocked("moving the key from the keyring to a passphrase needs the new passphrase")
        return rotate_key(self._vault, state, target)

    def verify_records(self) -> list[str]:
        """Open every record; the descriptions of the damaged ones (empty when all are intact)."""
        damaged: list[str] = []
        for info in self.store.list_conversations():
            if info.damaged:
                damaged.append(f"the title of conversation {info.id}")
            self.store.messages(info.id, on_damaged="skip", damaged=damaged)
        self.store.settings(on_damaged="skip", damaged=damaged)
        for blob in self.store.list_blobs(on_damaged="skip", damaged=damaged):
            try:
                self.store.get_blob(blob.id)
            except RecordDamaged as exc:
                damaged.append(str(exc))
        self.audit.entries(on_damaged="skip", damaged=damaged)
        return damaged

    def delete_everything(self) -> dict[str, Any]:
        """Destroy the key (keyring entry) and the files; the profile is closed afterwards."""
        v = self._vault
        with v.lock:
            if not v.closed:
                v.conn.close()
                v.closed = True
        return delete_profile(self.dir, source=v.source)

    def close(self) -> None:
        if not self._vault.closed:
            ledger.flush(self._vault)
        self._vault.close()

    def __enter__(self) -> Profile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _upgrade_kdf(vault: Vault) -> bool:
    """Re-wrap the data keys under a passphrase key of today's scrypt cost when the stored one is weaker
    (one transaction: the old key-encryption key goes with it; the data keys themselves are unchanged)."""
    target = crypto.scrypt_n()
    with vault.read() as conn:
        rows = conn.execute("SELECT id, params FROM keks WHERE source = 'passphrase'").fetchall()
    weak = [str(kid) for kid, params in rows if int(json.loads(params).get("n", 0)) < target]
    if not weak:
        return False
    kek_id, params, kek = vault.source.new_kek()  # the slow derivation, outside the transaction
    with vault.write() as conn:
        if vault.get_meta("rotation") is not None:
            return False  # a rotation started meanwhile; it makes a new key anyway
        at = now()
        conn.execute("INSERT INTO keks (id, source, params, created_at) VALUES (?, 'passphrase', ?, ?)",
                     (kek_id, json.dumps(params), at))
        for gen, rk in vault.keys.items():
            conn.execute("INSERT OR REPLACE INTO data_keys (gen, kek_id, wrapped, created_at) VALUES (?, ?, ?, ?)",
                         (gen, kek_id, crypto.wrap_secret(kek, f"data_keys/{gen}", rk.secret), at))
        marks = ",".join("?" * len(weak))
        still = conn.execute(f"SELECT id FROM keks WHERE source = 'passphrase' AND id IN ({marks})", weak).fetchall()
        old_ids = [str(r[0]) for r in still]
        if old_ids:
            marks = ",".join("?" * len(old_ids))
            conn.execute(f"DELETE FROM data_keys WHERE kek_id IN ({marks})", old_ids)
            conn.execute(f"DELETE FROM keks WHERE id IN ({marks})", old_ids)
        AuditTrail(vault).append_in_transaction("key.kdf.upgraded", {"kdf": "scrypt", "n": params["n"]})
    log.info("passphrase key upgraded to scrypt n=%s", params["n"])
    return True


def _shred(path: Path) -> None:
    """Overwrite a file with zeros, sync, delete. (Its content is ciphertext; the key is gone first.)"""
    try:
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            chunk = bytes(1 << 20)
            left = size
            while left > 0:
                n = min(left, len(chunk))
                fh.write(chunk[:n])
                left -= n
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        log.info("could not overwrite %s before deleting: %s", path.name, exc.strerror)
    path.unlink(missing_ok=True)


def delete_profile(directory: Path, *, source: keys.KeySource | None = None) -> dict[str, Any]:
    """Delete a profile without needing its key: the keyring entry, then the database files (overwritten),
    then the whole folder when TARA created it. Returns what was removed and what was left."""
    db = directory / DB_NAME
    if not db.exists():
        raise ProfileError(f"there is no TARA profile in {directory}; check --profile or TARA_HOME")
    if identify(db) != "tara" and source is None:
        raise ProfileError(f"{db} is empty, not a TARA profile; delete it yourself if it is yours")
    meta: dict[str, str] = {}
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            meta = _read_meta(conn) if _initialized(conn) else {}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        log.info("profile metadata unreadable (%s); deleting the files anyway", exc)
    keyring_deleted = False
    if source is None and meta.get("key_source") == "keyring" and keys.keyring_backend() is not None:
        source = keys.KeyringSource(meta["profile_id"])
    if source is not None and source.kind == "keyring":
        source.destroy()
        keyring_deleted = True
    removed = []
    for suffix in DB_SUFFIXES:
        f = Path(f"{db}{suffix}")
        if f.exists():
            _shred(f)
            removed.append(f.name)
    if meta.get("profile_id"):
        try:
            ledger.anchor_path(meta["profile_id"]).unlink(missing_ok=True)
        except OSError as exc:
            log.info("profile anchor not removed: %s", exc.strerror)
    kept: list[str] = []
    if meta.get("owns_dir") == "1":
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"{directory} (the whole profile folder)")
    elif directory.exists():
        kept = sorted(p.name for p in directory.iterdir())
        if not kept:
            directory.rmdir()
    keys.forget_derived_keys()
    log.info("profile deleted")
    return {"dir": str(directory), "removed": removed, "kept": kept, "keyring_entry_deleted": keyring_deleted}
