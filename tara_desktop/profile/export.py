"""``tara profile export OUT``: everything in the profile, decrypted, as readable JSON (folder or zip).

Written atomically and privately: an owner-only staging folder next to OUT, renamed into place when
complete; a staging folder a killed export left behind is removed at the next export or profile open. Damaged
records are left out and listed in ``manifest.json``. The export is recorded in the audit trail.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tara_desktop.files import (
    describe_os_error,
    fsync_path,
    make_private_dir,
    open_private,
    process_alive,
    write_private,
)
from tara_desktop.jobs import JobState
from tara_desktop.profile.errors import ProfileError, RecordDamaged

if TYPE_CHECKING:
    from tara_desktop.profile.profile import Profile

log = logging.getLogger(__name__)

FORMAT = "tara-profile-export"


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80]
    return cleaned or "blob"


def _json_bytes(value: Any) -> bytes:
    # A lone surrogate (possible in Python text) becomes a JSON \uXXXX escape: the file stays valid UTF-8.
    return json.dumps(value, ensure_ascii=False, indent=2).encode("utf-8", "backslashreplace")


def collect(profile: Profile, state: JobState) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of the export (relative path -> bytes) and the summary."""
    store = profile.store
    damaged: list[str] = []
    files: dict[str, bytes] = {}

    state.report(0.05, "conversations")
    conversations = []
    infos = store.list_conversations()
    n_messages = 0
    summaries = {s.conversation_id: s for s in store.summaries(on_damaged="skip", damaged=damaged)}
    for i, info in enumerate(infos):
        state.check()
        if info.damaged:
            damaged.append(f"the title of conversation {info.id}")
        msgs = store.messages(info.id, on_damaged="skip", damaged=damaged)
        n_messages += len(msgs)
        conversations.append({
            "id": info.id, "title": info.title, "created_at": iso(info.created_at),
            "updated_at": iso(info.updated_at), "pinned_domain": info.pinned_domain,
            "summary": (
                {"text": summaries[info.id].text, "covers": summaries[info.id].covers,
                 "updated_at": iso(summaries[info.id].updated_at)}
                if info.id in summaries else None
            ),
            "messages": [
                {"id": m.id, "role": m.role, "content": m.content, "meta": m.meta, "created_at": iso(m.created_at)}
                for m in msgs
            ],
        })
        state.report(0.05 + 0.6 * (i + 1) / max(1, len(infos)), "conversations")
    files["conversations.json"] = _json_bytes(conversations)

    state.report(0.7, "settings, consent, audit")
    files["settings.json"] = _json_bytes(store.settings(on_damaged="skip", damaged=damaged))
    try:
        consent_history = profile.consent.history()
    except RecordDamaged as exc:
        damaged.append(str(exc))
        consent_history = []
    current = {k: {"granted": s.granted, "chosen": s.chosen, "at": iso(s.at)} for k, s in _consent(profile, damaged)}
    files["consent.json"] = _json_bytes({
        "current": current,
        "history": [{**h, "at": iso(h["at"])} for h in consent_history],
    })
    report = profile.audit.verify()
    entries = profile.audit.entries(on_damaged="skip", damaged=damaged)
    files["audit.json"] = _json_bytes({
        "verify": report.as_dict(),
        "entries": [{"id": e.id, "at": iso(e.created_at), "event": e.event, "details": e.details} for e in entries],
    })

    state.report(0.75, "blobs")
    blob_index = []
    blobs = store.list_blobs(on_damaged="skip", damaged=damaged)
    for i, blob in enumerate(blobs):
        state.check()
        try:
            data = store.get_blob(blob.id)
        except RecordDamaged as exc:
            damaged.append(str(exc))
            continue
        rel = f"blobs/{blob.id}-{_safe_name(blob.name)}"
        files[rel] = data
        blob_index.append({"id": blob.id, "kind": blob.kind, "name": blob.name, "size": blob.size,
                           "created_at": iso(blob.created_at), "file": rel})
        state.report(0.75 + 0.2 * (i + 1) / max(1, len(blobs)), "blobs")
    files["blobs.json"] = _json_bytes(blob_index)

    summary = {
        "conversations": len(conversations), "messages": n_messages, "blobs": len(blob_index),
        "settings": len(json.loads(files["settings.json"])), "audit_entries": len(entries),
        "damaged_records": damaged,
    }
    files["manifest.json"] = _json_bytes({
        "format": FORMAT, "version": 1, "exported_at": iso(datetime.now(UTC).timestamp()),
        "profile_id": profile.profile_id, "counts": summary,
        "note": "Decrypted copy of a TARA profile. Anyone who can read these files can read your data.",
    })
    return files, summary


def _consent(profile: Profile, damaged: list[str]) -> list[tuple[str, Any]]:
    out = []
    from tara_desktop.profile.consent import CONSENT_KINDS

    for kind in CONSENT_KINDS:
        try:
            out.append((kind, profile.consent.state(kind)))
        except RecordDamaged as exc:
            damaged.append(str(exc))
    return out


STAGING_PREFIX = ".part-"
STAGING_MARKER = ".tara-export-staging"
_STAGING_RE = re.compile(r"^\..+\.part-[0-9a-f]{8}$")


def _staging_dir(out: Path) -> Path:
    return out.parent / f".{out.name}{STAGING_PREFIX}{secrets.token_hex(4)}"


_EXPORT_NAMES = {"audit.json", "blobs.json", "blobs", "consent.json", "conversations.json", "manifest.json",
                 "settings.json", "summaries.json", "export", "export.zip"}


def remove_stale_staging(folder: Path, also: list[str] | None = None) -> list[str]:
    """Remove export staging folders (``.OUT.part-xxxxxxxx``) a killed export left in ``folder``, and the
    ones listed in ``also``; a folder still owned by a live export is kept. Returns what was removed."""
    listed = {Path(p) for p in also or []}
    candidates: list[Path] = sorted(listed)
    try:
        candidates += sorted(p for p in folder.iterdir() if _STAGING_RE.match(p.name))
    except OSError:
        pass
    removed: list[str] = []
    for path in dict.fromkeys(candidates):
        if not _STAGING_RE.match(path.name) or path.is_symlink() or not path.is_dir():
            continue
        try:
            pid: int | None = int(json.loads((path / STAGING_MARKER).read_text(encoding="utf-8"))["pid"])
        except FileNotFoundError:
            # Killed before its marker, or staged by an older TARA: ours when the profile listed it or
            # it holds nothing but export files.
            try:
                ours = path in listed or {p.name for p in path.iterdir()} <= _EXPORT_NAMES
            except OSError:
                ours = False
            if not ours:
                continue
            pid = None
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid is not None and (pid == os.getpid() or process_alive(pid)):
            continue  # an export still running
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(str(path))
    return removed


def write_export(files: dict[str, bytes], out: Path, staging: Path | None = None) -> None:
    """Write atomically and privately: into an owner-only (0700/0600) staging folder next to OUT, then
    rename onto OUT (which must not exist). The result is owner-only too: it holds decrypted data."""
    if out.exists():
        raise ProfileError(f"{out} already exists; choose a new path for the export")
    if not out.parent.is_dir():
        raise ProfileError(f"the folder {out.parent} does not exist; create it or choose another path")
    tmp = staging or _staging_dir(out)
    try:
        make_private_dir(tmp)
        write_private(tmp / STAGING_MARKER, json.dumps({"pid": os.getpid()}).encode("ascii"))
        if out.suffix.lower() == ".zip":
            staged = tmp / "export.zip"
            with open_private(staged) as fh:
                with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                    for rel, data in sorted(files.items()):
                        zf.writestr(rel, data)
                fh.flush()
                os.fsync(fh.fileno())
        else:
            staged = tmp / "export"
            make_private_dir(staged)
            for rel, data in sorted(files.items()):
                target = staged / rel
                make_private_dir(target.parent, parents=True, exist_ok=True)
                write_private(target, data)
        if out.exists():
            raise ProfileError(f"{out} appeared while exporting; choose a new path for the export")
        os.replace(staged, out)
        fsync_path(out.parent)
    except OSError as exc:
        raise ProfileError(f"the export to {out} failed: {describe_os_error(exc)}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_profile(profile: Profile, out: Path, state: JobState | None = None) -> dict[str, Any]:
    state = state or JobState()
    out = Path(out).expanduser().absolute()
    if out.exists():
        raise ProfileError(f"{out} already exists; choose a new path for the export")
    try:
        out.resolve().relative_to(profile.dir.resolve())
        inside = True
    except ValueError:
        inside = False
    if inside:
        raise ProfileError("the export would be written inside the profile folder in plain text; choose a path outside it")
    remove_stale_staging(out.parent, _staging_list(profile))
    files, summary = collect(profile, state)
    state.report(0.96, "writing")
    staging = _staging_dir(out)
    _record_staging(profile, add=str(staging))
    try:
        write_export(files, out, staging)
    finally:
        _record_staging(profile, remove=str(staging))
    profile.audit.append("export", {"to": str(out), **{k: v for k, v in summary.items() if k != "damaged_records"},
                                    "damaged_records": len(summary["damaged_records"])})
    state.report(1.0, "exported")
    return {"out": str(out), **summary}


# The profile remembers where its exports are being staged (sealed, like every value), so a staging folder
# a kill left behind is removed at the next open or export even when it sits in another folder.
STAGING_META = "export_staging"


def _staging_list(profile: Profile) -> list[str]:
    return profile._vault.sealed_meta(STAGING_META) or []


def _record_staging(profile: Profile, *, add: str | None = None, remove: str | None = None) -> None:
    vault = profile._vault
    try:
        with vault.write():
            current = [p for p in (vault.sealed_meta(STAGING_META) or []) if p != remove]
            if add is not None:
                current.append(add)
            vault.set_sealed_meta(STAGING_META, current or None)
    except sqlite3.Error as exc:  # a read-only profile still exports; only the reminder is lost
        log.info("export staging not recorded: %s", exc)


def clean_stale_exports(profile: Profile) -> list[str]:
    """At open: remove staging folders of exports that were killed (see ``remove_stale_staging``)."""
    listed = _staging_list(profile)
    if not listed:
        return []
    removed: list[str] = []
    for folder in sorted({str(Path(p).parent) for p in listed}):
        removed += remove_stale_staging(Path(folder), [p for p in listed if str(Path(p).parent) == folder])
    gone = [p for p in listed if not Path(p).exists()]
    if gone:
        vault = profile._vault
        try:
            with vault.write():
                left = [p for p in (vault.sealed_meta(STAGING_META) or []) if p not in gone]
                vault.set_sealed_meta(STAGING_META, left or None)
        except sqlite3.Error as exc:
            log.info("export staging list not updated: %s", exc)
    if removed:
        log.info("removed %d staging folder(s) of interrupted exports", len(removed))
    return removed
