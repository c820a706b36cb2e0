"""``tara serve`` as a user runs it: token shown and replaced, bad flags refused, serving until Ctrl+C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _tara(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TARA_HOME": str(home), "TARA_PASSPHRASE": "pw"}
    return subprocess.run([sys.executable, "-m", "tara_desktop.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_the_token_is_made_once_kept_and_replaced_on_request(tmp_path: Path) -> None:
    first = _tara("serve", "--show-token", home=tmp_path)
    assert first.returncode == 0 and first.stdout.strip().startswith("tara-")
    again = _tara("serve", "--show-token", home=tmp_path)
    assert again.stdout == first.stdout
    new = _tara("serve", "--new-token", home=tmp_path)
    assert new.returncode == 0 and new.stdout.strip() not in ("", first.stdout.strip())
    assert _tara("serve", "--show-token", home=tmp_path).stdout == new.stdout


@pytest.mark.parametrize(("args", "says"), [
    (["--host", "0.0.0.0"], "--allow-remote"),
    (["--host", "192.168.1.20", "--port", "9000"], "--allow-remote"),
    (["--port", "99999"], "port"),
    (["--port", "x"], "invalid int"),
])
def test_bad_flags_are_one_error_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    result = _tara("serve", *args, home=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and says in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_serve_answers_with_the_token_only_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    token = _tara("serve", "--show-token", home=tmp_path).stdout.strip()
    env = {**os.environ, "TARA_HOME": str(tmp_path), "TARA_PASSPHRASE": "pw"}
    with subprocess.Popen([sys.executable, "-m", "tara_desktop.cli", "serve", "--port", "0"], env=env,
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as proc:
        _talk_then_stop(proc, token)


def _talk_then_stop(proc: subprocess.Popen[str], token: str) -> None:
    try:
        assert proc.stderr is not None
        url = ""
        for line in proc.stderr:
            found = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
            if found:
                url = found.group(1)
                break
        assert url, "tara serve printed no address"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/models", timeout=60)
        assert refused.value.code == 401
        refused.value.close()
        request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            ids = [m["id"] for m in json.load(response)["data"]]
        assert ids[0] == "tara" and "tara:general" in ids
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(60) == 0 and "GET /v1/models 401" in rest and "GET /v1/models 200" in rest
        assert "stopped" in rest and "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
