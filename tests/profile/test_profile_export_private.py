"""A profile export is staged and written owner-only, and a killed export leaves nothing behind for long:
the next export and the next profile open remove its staging folder."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tara_desktop.profile import Profile

from .profile_helpers import files_containing

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX modes and SIGKILL")

CANARY = "zebra-canary-7741"

# Runs an export that is SIGKILLed after its fourth file is written (mid-export, as kill -9).
KILLED_EXPORT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from tara_desktop.profile import Profile, export

    real = export.write_private
    written = []

    def write_then_die(path, data):
        real(path, data)
        written.append(path)
        if len(written) == 4:  # marker, audit.json, blobs.json, the voice blob
            os.kill(os.getpid(), signal.SIGKILL)

    export.write_private = write_then_die
    with Profile.open(Path(sys.argv[1])) as p:
        p.export(Path(sys.argv[2]))
    """
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _killed_export(profile_dir: Path, out: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(profile_dir), str(out)], env=env,
                          capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    partials = [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.part-")]
    assert len(partials) == 1, partials
    return partials[0]


def _fill(profile_dir: Path) -> None:
    with Profile.open(profile_dir) as p:
        cid = p.store.create_conversation(f"about {CANARY}")
        p.store.append_message(cid, "user", f"my secret is {CANARY}")
        p.store.put_blob("voice", "take.wav", f"RIFF {CANARY}".encode())


def test_killed_export_is_private_and_removed_by_the_next_export(tmp_path: Path) -> None:
    profile_dir = tmp_path / "profile"
    _fill(profile_dir)
    exports = tmp_path / "exports"
    exports.mkdir(mode=0o755)
    os.chmod(exports, 0o755)
    partial = _killed_export(profile_dir, exports / "out")
    # What a kill leaves is owner-only: the folder and every file in it.
    assert _mode(partial) == 0o700
    for p in partial.rglob("*"):
        assert _mode(p) == (0o700 if p.is_dir() else 0o600), p
    assert files_containing(partial, CANARY)  # decrypted content: why it must be private and removed
    # Next export to another name in the same folder removes the stale partial.
    with Profile.open(profile_dir) as p:
        p.export(exports / "second")
    assert not partial.exists()
    assert sorted(x.name for x in exports.iterdir()) == ["second"]
    assert _mode(exports / "second") == 0o700
    for f in (exports / "second").rglob("*"):
        assert _mode(f) == (0o700 if f.is_dir() else 0o600), f


def test_killed_export_elsewhere_is_removed_when_the_profile_opens(tmp_path: Path) -> None:
    profile_dir = tmp_path / "profile"
    _fill(profile_dir)
    elsewhere = tmp_path / "usb"
    elsewhere.mkdir()
    partial = _killed_export(profile_dir, elsewhere / "backup")
    Profile.open(profile_dir).close()
    assert not partial.exists()
    assert list(elsewhere.iterdir()) == []


def test_zip_export_is_owner_only(profile: Profile, tmp_path: Path) -> None:
    profile.store.create_conversation("t")
    out = tmp_path / "e.zip"
    profile.export(out)
    assert _mode(out) == 0o600
    assert "manifest.json" in zipfile.ZipFile(out).namelist()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_live_exports_staging_folder_and_foreign_dot_folders_are_kept(profile: Profile, tmp_path: Path) -> None:
    from tara_desktop.profile.export import STAGING_MARKER, remove_stale_staging

    live = tmp_path / ".other.part-0123abcd"
    live.mkdir()
    (live / STAGING_MARKER).write_text(json.dumps({"pid": os.getppid()}))  # a running process
    foreign = tmp_path / ".notes.part-89abcdef"
    foreign.mkdir()
    (foreign / "my-notes.txt").write_text("mine")
    assert remove_stale_staging(tmp_path) == []
    assert live.exists() and foreign.exists()


def test_export_removes_a_partial_whose_exporter_died(profile: Profile, tmp_path: Path) -> None:
    from tara_desktop.profile.export import STAGING_MARKER

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / ".old.part-00ff00ff"
    (stale / "export").mkdir(parents=True)
    (stale / STAGING_MARKER).write_text(json.dumps({"pid": dead.pid}))
    (stale / "export" / "conversations.json").write_text(CANARY)
    profile.export(tmp_path / "new")
    assert not stale.exists()
