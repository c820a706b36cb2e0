"""``profile.consent``: the user's first-use choices, each withdrawable later.

Kinds: ``store_history`` (keep conversations), ``record_voice`` (keep push-to-talk recordings, encrypted,
blob kind "voice"; the microphone works without it), ``train_on_my_data`` (keep data for training, blob
kinds "dataset" and "training"), ``online_voice`` (reply text is sent to Microsoft's speech service, Edge
TTS; nothing is collected). Every choice
is a sealed row (a history, newest wins) and an audit entry. Collectors must ask ``allows(kind)`` before
collecting; withdrawing can delete what was collected (``delete_collected``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tara_desktop.profile.audit import AuditTrail
from tara_desktop.profile.errors import ConsentError, ProfileError
from tara_desktop.profile.store import ProfileStore, _ts
from tara_desktop.profile.vault import Vault, dumps, loads, now

CONSENT_KINDS = ("store_history", "record_voice", "train_on_my_data", "online_voice")
# Until the user chooses: history is kept (encrypted, on this machine); nothing is recorded or trained on.
DEFAULTS = {"store_history": True, "record_voice": False, "train_on_my_data": False, "online_voice": False}
COLLECTED_BLOB_KINDS = {"store_history": (), "record_voice": ("voice",), "train_on_my_data": ("dataset", "training"),
                        "online_voice": ()}


@dataclass(frozen=True)
class ConsentState:
    kind: str
    granted: bool
    chosen: bool  # False: the user was never asked; ``granted`` is the default
    at: float | None


def _check(kind: Any) -> str:
    if kind not in CONSENT_KINDS:
        raise ConsentError(f"unknown consent kind '{kind}'; use one of: {', '.join(CONSENT_KINDS)}")
    return str(kind)


class Consent:
    def __init__(self, vault: Vault, store: ProfileStore, audit: AuditTrail) -> None:
        self._vault = vault
        self._store = store
        self._audit = audit
        self._cache: tuple[str | None, dict[str, ConsentState]] | None = None

    def _latest(self, kind: str) -> ConsentState:
        """The choice as the signed audit trail records it (the consent rows are its readable history,
        checked against it by ``tara profile audit-verify``): deleting or editing the newest consent row
        outside TARA changes nothing. If the trail itself fails its check, nothing is collected."""
        return self._signed_states().get(kind) or ConsentState(kind, DEFAULTS[kind], False, None)

    def _signed_states(self) -> dict[str, ConsentState]:
        head = self._vault.get_meta("audit_head")
        if self._cache is not None and self._cache[0] == head:
            return self._cache[1]
        states: dict[str, ConsentState] = {}
        for entry in self._audit.entries(on_damaged="skip"):
            kind = entry.details.get("kind")
            if entry.event == "consent" and kind in CONSENT_KINDS and isinstance(entry.details.get("granted"), bool):
                states[str(kind)] = ConsentState(str(kind), bool(entry.details["granted"]), True, entry.created_at)
        if not self._audit.verify().ok:
            for k in CONSENT_KINDS:
                if not DEFAULTS[k]:  # collecting needs a consent the trail can no longer prove
                    prior = states.get(k)
                    states[k] = ConsentState(k, False, prior.chosen if prior else False, prior.at if prior else None)
        self._cache = (head, states)
        return states

    def table_state(self, kind: str) -> ConsentState:
        """The newest consent row of ``kind`` (what the table says; ``state`` is what the trail says)."""
        row = self._vault.conn.execute(
            "SELECT id, created_at, gen, data FROM consent WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,)
        ).fetchone()
        if row is None:
            return ConsentState(kind, DEFAULTS[kind], False, None)
        rid, at, gen, data = row
        body = loads(self._vault.open(f"consent/{rid}/{kind}", gen, data, f"consent record {rid} ({kind})"))
        return ConsentState(kind, bool(body["granted"]), True, _ts(at))

    def state(self, kind: str) -> ConsentState:
        kind = _check(kind)
        with self._vault.read():
            return self._latest(kind)

    def get(self, kind: str) -> bool:
        """The current choice (the default when the user has not chosen yet)."""
        return self.state(kind).granted

    allows = get

    def is_chosen(self, kind: str) -> bool:
        return self.state(kind).chosen

    def pending(self) -> list[str]:
        """Kinds the user has not chosen yet: ask these at first use."""
        return [k for k in CONSENT_KINDS if not self.state(k).chosen]

    def all(self) -> dict[str, ConsentState]:
        with self._vault.read():
            return {k: self._latest(k) for k in CONSENT_KINDS}

    def set(self, kind: str, granted: bool) -> None:
        """Record a choice (and an audit entry). Withdrawing does not delete: see ``delete_collected``."""
        kind = _check(kind)
        if not isinstance(granted, bool):
            raise ProfileError(f"consent for {kind} must be True or False")
        v = self._vault
        with v.write() as conn:
            before = self._latest(kind)
            rid = v.next_id("consent")
            gen, sealed = v.seal(f"consent/{rid}/{kind}", dumps({"kind": kind, "granted": granted}))
            conn.execute("INSERT INTO consent (id, kind, created_at, gen, data) VALUES (?, ?, ?, ?, ?)",
                         (rid, kind, now(), gen, sealed))
            self._audit.append_in_transaction(
                "consent",
                {"kind": kind, "granted": granted, "before": before.granted if before.chosen else None, "record": rid},
            )

    def withdraw(self, kind: str, *, delete_collected: bool = False) -> int:
        """Withdraw consent; with ``delete_collected`` also delete what was collected. Returns how many
        items were deleted."""
        self.set(kind, False)
        return self.delete_collected(kind) if delete_collected else 0

    def collected(self, kind: str) -> int:
        """How many items were collected under this consent (what withdrawal would offer to delete)."""
        kind = _check(kind)
        counts = self._store.counts()
        if kind == "store_history":
            return int(counts["conversations"])
        return sum(int(counts["blobs"].get(k, 0)) for k in COLLECTED_BLOB_KINDS[kind])

    def history(self) -> list[dict[str, Any]]:
        with self._vault.read() as conn:
            rows = conn.execute("SELECT id, kind, created_at, gen, data FROM consent ORDER BY id").fetchall()
        out = []
        for rid, kind, at, gen, data in rows:
            body = loads(self._vault.open(f"consent/{rid}/{kind}", gen, data, f"consent record {rid} ({kind})"))
            out.append({"id": int(rid), "kind": str(kind), "granted": bool(body["granted"]), "at": _ts(at)})
        return out

    def delete_collected(self, kind: str) -> int:
        kind = _check(kind)
        if kind == "store_history":
            return self._store.delete_all_conversations()
        return sum(self._store.delete_blobs(k) for k in COLLECTED_BLOB_KINDS[kind])
