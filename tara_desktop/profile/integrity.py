"""``tara profile audit-verify``: everything the profile can check about itself, in one report.

1. the audit trail: every entry's seal, signature and chain link, and its signed head;
2. consent: the newest consent row of each kind agrees with the signed trail (which is what counts);
3. messages: their number and sum agree with the signed ledger (a removed message, or an older copy of a
   message or of the messages table, is found);
4. the ledger's copy of the audit head agrees with the trail (cutting the trail back together with its
   head is found);
5. rollback: the database is not older than its anchor, kept outside it and outside its folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tara_desktop.profile import ledger
from tara_desktop.profile.audit import AuditReport, open_head
from tara_desktop.profile.consent import CONSENT_KINDS
from tara_desktop.profile.errors import RecordDamaged

if TYPE_CHECKING:
    from tara_desktop.profile.profile import Profile
    from tara_desktop.profile.vault import Vault


@dataclass
class IntegrityReport:
    audit: AuditReport
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.audit.ok and not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"{self.audit}; " + "; ".join(self.checked)
        return "; ".join(([str(self.audit)] if not self.audit.ok else []) + self.problems)

    def as_dict(self) -> dict[str, Any]:
        return {**self.audit.as_dict(), "ok": self.ok, "problems": self.problems, "checked": self.checked}


def check(profile: Profile) -> IntegrityReport:
    vault = profile._vault
    report = IntegrityReport(profile.audit.verify())
    with vault.read():
        signed = ledger.load(vault)
        head = _head(vault)
        consent = profile.consent
        for kind in CONSENT_KINDS:
            trail = consent.state(kind)
            try:
                table = consent.table_state(kind)
            except RecordDamaged as exc:
                report.problems.append(f"consent {kind}: {exc}")
                continue
            if (trail.chosen, trail.granted) != (table.chosen, table.granted):
                said = ("yes" if trail.granted else "no") if trail.chosen else "not chosen"
                report.problems.append(
                    f"consent {kind}: the consent records were changed outside TARA (the newest was removed or "
                    f"replaced); the signed audit trail says '{said}', which is what TARA follows"
                )
        if signed is None:
            report.problems.append("the signed ledger of the profile is missing: it was removed outside TARA")
            return report
        _check_conversations(vault, signed, report)
        audit = signed.get("audit", {})
        if head is not None and (int(audit.get("count", 0)), str(audit.get("last_hash", ""))) != (
            int(head["count"]), str(head["last_hash"])
        ):
            report.problems.append(
                f"audit trail: its head was replaced outside TARA (the ledger signed {audit.get('count')} entries, "
                f"the head says {head['count']}): entries were cut off together with the head"
            )
        version = int(signed.get("version", 0))
        anchor = ledger.read_anchor(vault)
        if anchor is None:
            report.checked.append(
                "rollback not checked: this machine holds no anchor of the profile yet (it was copied or moved "
                "here, or the anchor was removed); the next change writes one"
            )
        elif "bad" in anchor:
            report.problems.append(f"the profile's anchor {ledger.anchor_path(vault)}: {anchor['bad']}")
        elif int(anchor["version"]) > version or int(anchor["top"]) > ledger.high_water(vault):
            report.problems.append(
                f"rollback: the profile database is older than its anchor (version {version}, newest message "
                f"{ledger.high_water(vault)}; the anchor says {anchor['version']} and {anchor['top']}): it was "
                "replaced by an older copy, newer messages, consent changes or audit entries are missing"
            )
        else:
            report.checked.append("not rolled back (anchor verified)")
    return report


def _check_conversations(vault: Vault, signed: dict[str, Any], report: IntegrityReport) -> None:
    rows = vault.conn.execute("SELECT id, ledger FROM conversations ORDER BY id").fetchall()
    cids = [int(r[0]) for r in rows]
    want = signed.get("conversations", {})
    total = sum(ledger.conversation_item(c) for c in cids) % (1 << 256)
    if len(cids) != int(want.get("n", -1)):
        n = int(want.get("n", 0))
        what = "removed" if len(cids) < n else "added"
        report.problems.append(
            f"conversations: {abs(n - len(cids))} conversation(s) were {what} outside TARA ({n} signed, "
            f"{len(cids)} found)"
        )
    elif total != int(str(want.get("sum", "0")), 16):
        report.problems.append("conversations: conversation rows were replaced outside TARA (ids differ from the signed ledger)")
    bad: list[str] = []
    messages = 0
    for cid, raw in rows:
        try:
            led = ledger.conversation_ledger(vault, int(cid), raw)
        except RecordDamaged as exc:
            bad.append(f"conversation {cid}: {exc}")
            continue
        n, msum, _, damaged = ledger.count_messages(vault, int(cid))
        messages += n
        if n != int(led["n"]):
            what = "removed" if n < int(led["n"]) else "added"
            bad.append(f"conversation {cid}: {abs(int(led['n']) - n)} message(s) were {what} outside TARA "
                       f"({led['n']} signed, {n} found)")
        elif msum != int(str(led["sum"]), 16) and not damaged:
            bad.append(f"conversation {cid}: messages were replaced outside TARA (by older copies or other rows)")
    orphans = vault.conn.execute(
        "SELECT COUNT(*) FROM messages WHERE conversation_id NOT IN (SELECT id FROM conversations)"
    ).fetchone()[0]
    if orphans:
        bad.append(f"{orphans} message(s) belong to no conversation (added outside TARA)")
    report.problems += bad
    if not bad:
        report.checked.append(f"{len(cids)} conversations and {messages} messages match the signed ledger")


def _head(vault: Vault) -> dict[str, Any] | None:
    try:
        return open_head(vault)
    except RecordDamaged:
        return None  # reported by the audit check
