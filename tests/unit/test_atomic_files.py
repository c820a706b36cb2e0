"""files.atomic_write / atomic_file / atomic_dir: a reader sees the old or the complete new content, never
a half-written one, whatever happens to the writer (an exception, or a kill of its process)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tara_desktop.files import atomic_dir, atomic_file, atomic_write


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_private_write_is_owner_only_even_over_a_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"old")
    target.chmod(0o644)
    atomic_write(target, b"new", private=True)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "m.gguf"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("cancelled")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


def test_atomic_dir_replaces_a_folder_and_cleans_up_on_error(tmp_path: Path) -> None:
    final = tmp_path / "adapter"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(final) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["b"]
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "c").write_text("3")
        raise RuntimeError("cancelled")
    assert sorted(p.name for p in final.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_killed_writer_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    target.write_bytes(b"old")
    child = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from tara_desktop.files import atomic_file
        with atomic_file(Path({str(target)!r})) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"x" * 1_000_000)
                fh.flush()
                print("written", flush=True)
                time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert target.read_bytes() == b"old"
