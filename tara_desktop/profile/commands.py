"""``tara profile status | export OUT | delete --yes | audit-verify | rotate-key | consent``."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tara_desktop import paths
from tara_desktop.jobs import JobState
from tara_desktop.profile.consent import CONSENT_KINDS
from tara_desktop.profile.errors import ProfileError, ProfileLocked, WrongPassphrase
from tara_desktop.profile.keys import backoff_seconds, check_new_passphrase
from tara_desktop.profile.profile import Profile, delete_profile
from tara_desktop.profile.vault import DB_NAME


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("profile", help="the encrypted profile: status, export, delete, audit, key rotation",
                              description="Manage the encrypted profile (TARA_HOME or --profile DIR).")
    sub = p.add_subparsers(dest="profile_command", metavar="ACTION", parser_class=type(p), required=True)

    s = sub.add_parser("status", help="where the profile is, how it is unlocked, counts, consent")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(handler=cmd_status)

    e = sub.add_parser("export", help="write everything, decrypted and readable, to a folder or .zip")
    e.add_argument("out", metavar="OUT", help="a new folder, or a file ending in .zip")
    e.set_defaults(handler=cmd_export)

    d = sub.add_parser("delete", help="destroy the key and the files of the profile (needs --yes)")
    d.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    d.set_defaults(handler=cmd_delete)

    a = sub.add_parser("audit-verify", help="check the audit trail, consent, messages and rollback; names what was changed")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    a.set_defaults(handler=cmd_audit_verify)

    r = sub.add_parser("rotate-key", help="re-encrypt everything under a new key",
                       description="Re-encrypt everything under a new key. A kill at any moment loses nothing; "
                                   "the next open finishes the rotation.")
    r.add_argument("--to", choices=("keyring", "passphrase"), dest="to_source",
                   help="move the key to the OS keyring, or protect it with a passphrase instead")
    r.add_argument("--new-passphrase", action="store_true",
                   help="change the passphrase (read from TARA_NEW_PASSPHRASE, or asked for on a terminal)")
    r.set_defaults(handler=cmd_rotate_key)

    c = sub.add_parser("consent", help="show consent choices, or set one: consent KIND yes|no")
    c.add_argument("kind", nargs="?", choices=CONSENT_KINDS, metavar="KIND", help=", ".join(CONSENT_KINDS))
    c.add_argument("choice", nargs="?", choices=("yes", "no"), help="yes to allow, no to withdraw")
    c.add_argument("--delete-collected", action="store_true",
                   help="with 'no': also delete what was collected under this consent")
    c.set_defaults(handler=cmd_consent)


def _progress(fraction: float | None, message: str) -> None:
    pct = "" if fraction is None else f"{round(fraction * 100):3d}% "
    sys.stderr.write(f"{pct}{message}\n")


PROMPT_ATTEMPTS = 3


def open_profile(*, create: bool = True) -> Profile:
    """Open the profile; ask for the passphrase on a terminal when none is set (or it is wrong: then up to
    three attempts, each wrong one waiting longer before the next)."""
    prompt = "TARA profile passphrase: "
    try:
        return Profile.open(create=create)
    except ProfileLocked:
        if not sys.stdin.isatty():
            raise
    except WrongPassphrase:  # TARA_PASSPHRASE is wrong, or the passphrase was changed since it was set
        if not sys.stdin.isatty():
            raise
        prompt = "TARA_PASSPHRASE does not unlock the profile (was the passphrase changed?); passphrase: "
    if not (paths.profile_dir() / DB_NAME).exists():
        passphrase = getpass.getpass("New passphrase for the TARA profile: ")
        check_new_passphrase(passphrase)
        if getpass.getpass("Repeat the passphrase: ") != passphrase:
            raise ProfileError("the two passphrases differ; run the command again and type the same passphrase twice")
        return Profile.open(passphrase=passphrase, create=create, check_new_passphrase=True)
    for attempt in range(PROMPT_ATTEMPTS):
        time.sleep(backoff_seconds(attempt))
        try:
            return Profile.open(passphrase=getpass.getpass(prompt), create=create)
        except WrongPassphrase:
            if attempt == PROMPT_ATTEMPTS - 1:
                raise
            prompt = "wrong passphrase; try again: "
    raise AssertionError("unreachable")


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def cmd_status(args: argparse.Namespace) -> int:
    directory = paths.profile_dir()
    if not (directory / DB_NAME).exists():
        if args.json:
            print(json.dumps({"dir": str(directory), "exists": False}))
        else:
            print(f"no profile yet in {directory} (it is created on first use)")
        return 0
    with open_profile(create=False) as profile:
        st = profile.status()
    if args.json:
        print(json.dumps({"exists": True, **st}, indent=2))
        return 0
    counts = st["counts"]
    blobs = ", ".join(f"{k}: {n}" for k, n in counts["blobs"].items()) or "none"
    print(f"profile:        {st['dir']}")
    print(f"database:       {st['database']} ({st['size_bytes'] // 1024} KiB, encrypted)")
    print(f"unlocked with:  {st['key_source_detail']}, key generation {st['key_generation']}"
          + (" (rotation in progress)" if st["rotation_in_progress"] else ""))
    print(f"conversations:  {counts['conversations']} ({counts['messages']} messages)")
    print(f"settings:       {counts['settings']}")
    print(f"blobs:          {blobs}")
    print(f"audit entries:  {counts['audit_entries']}")
    for kind, c in st["consent"].items():
        choice = ("yes" if c["granted"] else "no") + ("" if c["chosen"] else " (default, not chosen yet)")
        print(f"consent {kind + ':':17s}{choice}" + (f" since {_when(c['at'])}" if c["chosen"] else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser()
    if out.exists():
        raise ProfileError(f"{out} already exists; choose a new path for the export")
    with open_profile(create=False) as profile:
        summary = profile.export(out, JobState(_progress))
    print(f"exported {summary['conversations']} conversations, {summary['messages']} messages, "
          f"{summary['blobs']} blobs and {summary['audit_entries']} audit entries to {summary['out']}")
    if summary["damaged_records"]:
        sys.stderr.write(f"warning: {len(summary['damaged_records'])} damaged records were left out "
                         "(listed in manifest.json)\n")
    print("note: the export is NOT encrypted; keep it safe or delete it when done")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    directory = paths.profile_dir()
    if not args.yes:
        raise ProfileError(
            f"deleting the profile in {directory} destroys its key and every conversation, setting and recording "
            "for good; run `tara profile delete --yes` to confirm"
        )
    if not (directory / DB_NAME).exists():
        print(f"no profile in {directory}: nothing to delete")
        return 0
    result = delete_profile(directory)
    print(f"deleted the profile in {result['dir']}: " + ", ".join(result["removed"]))
    if result["keyring_entry_deleted"]:
        print("the profile key was removed from the OS keyring")
    if result["kept"]:
        print("left in place (not created by the profile): " + ", ".join(result["kept"]))
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    with open_profile(create=False) as profile:
        report = profile.verify_integrity()
    if args.json:
        print(json.dumps(report.as_dict()))
    if not report.ok:
        raise ProfileError(
            f"{report}; the profile was changed outside TARA — keep a copy of the folder and export what is readable"
        )
    if not args.json:
        print(report)
    return 0


def _new_passphrase() -> str:
    value = os.environ.get("TARA_NEW_PASSPHRASE")
    if value:
        check_new_passphrase(value)
        return value
    if not sys.stdin.isatty():
        raise ProfileError("set TARA_NEW_PASSPHRASE to the new passphrase (or run this in a terminal to type it)")
    first = getpass.getpass("New passphrase: ")
    check_new_passphrase(first)
    if getpass.getpass("Repeat the new passphrase: ") != first:
        raise ProfileError("the new passphrases differ; run the command again")
    return first


def cmd_rotate_key(args: argparse.Namespace) -> int:
    new_passphrase: str | None = None
    if args.new_passphrase or args.to_source == "passphrase":
        if args.to_source == "keyring":
            raise ProfileError("--new-passphrase goes with a passphrase, not with --to keyring; use one of them")
        new_passphrase = _new_passphrase()
    with open_profile(create=False) as profile:
        gen = profile.rotate_key(JobState(_progress), key_source=args.to_source, new_passphrase=new_passphrase)
        source = profile.status()["key_source_detail"]
    print(f"key rotated: everything is now encrypted with key generation {gen} ({source}); the old key is destroyed")
    if new_passphrase is not None:
        print("from now on the profile opens with the new passphrase (update TARA_PASSPHRASE if you use it)")
    return 0


def cmd_consent(args: argparse.Namespace) -> int:
    if args.choice is not None and args.kind is None:
        raise ProfileError("name the consent kind before yes/no, e.g. `tara profile consent record_voice no`")
    if args.kind is not None and args.choice is None:
        raise ProfileError(f"say yes or no, e.g. `tara profile consent {args.kind} no`")
    if args.delete_collected and args.choice != "no":
        raise ProfileError("--delete-collected goes with withdrawing: `tara profile consent KIND no --delete-collected`")
    with open_profile() as profile:
        if args.kind is None:
            for kind, state in profile.consent.all().items():
                chosen = "" if state.chosen else " (default, not chosen yet)"
                print(f"{kind}: {'yes' if state.granted else 'no'}{chosen}")
            return 0
        if args.choice == "yes":
            profile.consent.set(args.kind, True)
            print(f"{args.kind}: yes")
            return 0
        deleted = profile.consent.withdraw(args.kind, delete_collected=args.delete_collected)
        print(f"{args.kind}: no (withdrawn)")
        if args.delete_collected:
            print(f"deleted {deleted} collected item(s)")
        else:
            left = profile.consent.collected(args.kind)
            if left:
                print(f"{left} item(s) collected earlier are kept; add --delete-collected to delete them")
    return 0
