"""`tara chat -` reads the message from stdin, so it never shows on the command line (`ps`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tara_desktop.profile import Profile

ROOT = Path(__file__).resolve().parent.parent


def _chat(home: Path, model: Path, stdin: bytes) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TARA_HOME": str(home), "TARA_PASSPHRASE": "pw", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tara_desktop.cli", "chat", "--model", str(model), "--domain", "business", "--json",
         "-"],
        input=stdin, capture_output=True, env=env, timeout=300,
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_chat_reads_the_message_from_stdin(tiny_gguf: Path, tmp_path: Path) -> None:
    home = tmp_path / "h"
    secret = "my private question about pricing, from stdin"
    ok = _chat(home, tiny_gguf, (secret + "\n").encode())
    assert ok.returncode == 0, ok.stderr
    details = json.loads(ok.stderr.strip().splitlines()[-1])
    with Profile.open(home, passphrase="pw") as p:
        assert p.store.message(details["user_message_id"]).content == secret


def test_chat_stdin_errors_are_one_line(tiny_gguf: Path, tmp_path: Path) -> None:
    for data, expected in ((b"", "no message on stdin"), (b"caf\xe9\n", "not valid UTF-8")):
        bad = _chat(tmp_path / "h", tiny_gguf, data)
        assert bad.returncode == 2 and bad.stderr.startswith("error: ") and expected in bad.stderr, bad.stderr
        assert len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr


def test_a_damaged_message_is_skipped_and_named_not_fatal(tiny_gguf: Path, tmp_path: Path) -> None:
    import sqlite3

    home = tmp_path / "h"
    first = _chat(home, tiny_gguf, b"first question about pricing\n")
    assert first.returncode == 0, first.stderr
    details = json.loads(first.stderr.strip().splitlines()[-1])
    cid, bad = details["conversation_id"], details["user_message_id"]
    conn = sqlite3.connect(home / "profile.db")
    with conn:
        conn.execute("UPDATE messages SET data = substr(data, 1, length(data) - 1) || x'00' WHERE id = ?", (bad,))
    conn.close()
    env = {**os.environ, "TARA_HOME": str(home), "TARA_PASSPHRASE": "pw", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tara_desktop.cli", "chat", "--model", str(tiny_gguf), "--domain", "business",
         "--conversation", str(cid), "and a follow-up"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"warning: 1 damaged message(s) of conversation {cid} skipped" in proc.stderr
    assert "Traceback" not in proc.stderr
