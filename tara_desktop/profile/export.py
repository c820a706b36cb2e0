"""``tara profile export OUT``: everything in the profile, decrypted, as readable JSON (folder or zip).

Written atomically: a temporary folder/file next to OUT, renamed into place when complete. Damaged
records are left out and listed in ``manifest.json``. The export is recorded in the audit trail.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tara_desktop.files import fsync_path
from tara_desktop.jobs import JobState
from tara_desktop.profile.errors import ProfileError, RecordDamaged

if TYPE_CHECKING:
    from tara_desktop.profile.profile import Profile

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


def write_export(files: dict[str, bytes], out: Path) -> None:
    """Write atomically: to a temporary sibling, then rename onto OUT (which must not exist)."""
    if out.exists():
        raise ProfileError(f"{out} already exists; choose a new path for the export")
    if not out.parent.is_dir():
        raise ProfileError(f"the folder {out.parent} does not exist; create it or choose another path")
    tmp = out.parent / f".{out.name}.part-{secrets.token_hex(4)}"
    try:
        if out.suffix.lower() == ".zip":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for rel, data in sorted(files.items()):
                    zf.writestr(rel, data)
            with open(tmp, "xb") as fh:
                fh.write(buf.getbuffer())
                fh.flush()
                os.fsync(fh.fileno())
        else:
            tmp.mkdir()
            for rel, data in sorted(files.items()):
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "xb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
        if out.exists():
            raise ProfileError(f"{out} appeared while exporting; choose a new path for the export")
        os.replace(tmp, out)
        fsync_path(out.parent)
    except OSError as exc:
        raise ProfileError(f"the export to {out} failed ({exc.strerror or exc}); check the path and free space") from exc
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


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
    files, summary = collect(profile, state)
    state.report(0.96, "writing")
    write_export(files, out)
    profile.audit.append("export", {"to": str(out), **{k: v for k, v in summary.items() if k != "damaged_records"},
                                    "damaged_records": len(summary["damaged_records"])})
    state.report(1.0, "exported")
    return {"out": str(out), **summary}
