"""`tara route`: human line, --json, --jsonl ordering and per-line errors, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tara_desktop import cli
from tara_desktop.config import load_configs
from tara_desktop.routing import router as router_module

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _shared_model_and_cache(
    monkeypatch: pytest.MonkeyPatch, embedding_cache: Path, router: router_module.DomainRouter
) -> None:
    # every test has its own TARA_HOME; share the (content-free) example-embedding cache between them,
    # and hand the command the model the session already loaded (loading it again only costs time)
    monkeypatch.setattr(router_module, "default_cache_dir", lambda: embedding_cache)
    loaded = router._embedder
    monkeypatch.setattr(router_module.OnnxEmbedder, "load", staticmethod(lambda _name: loaded))


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_route_prints_one_human_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["route", "how", "do", "I", "fix", "a", "segmentation", "fault", "in", "C"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("technical  confidence ")
    choice = load_configs().mapping.for_domain("technical")
    assert f"model {choice.model}" in out[0] and f"adapter {choice.adapter or 'none'}" in out[0]


def test_route_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["route", "--json", "write a haiku about autumn leaves"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["text"] == "write a haiku about autumn leaves"
    assert obj["domain"] == "creative"
    assert {"confidence", "model", "adapter", "reason"} <= set(obj)
    assert obj["degraded"] is False


def test_route_pin_and_previous(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["route", "--json", "--pin", "education", "fix my wifi"]) == 0
    assert json.loads(capsys.readouterr().out)["domain"] == "education"
    assert cli.main(["route", "--json", "--previous", "leadership", "and what about the other one?"]) == 0
    assert json.loads(capsys.readouterr().out)["domain"] == "leadership"


def test_jsonl_keeps_order_and_reports_empty_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        "I have a rash on my arm that won't go away",
        "",
        "how do I write a pitch deck for investors",
        "   ",
        "Comment réinstaller Windows sans perdre mes fichiers ?",
        "\x00\x01binary\xff junk",
        "😀😀",
    ]
    _stdin(monkeypatch, ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape"))
    assert cli.main(["route", "--jsonl"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["text"] for o in out] == lines
    assert [o.get("domain") for o in out] == [
        "healthcare", None, "business", None, "technical", "general", "general"
    ]
    assert "empty" in out[1]["error"] and "empty" in out[3]["error"]
    for o in out:
        if "error" not in o:
            assert {"text", "domain", "confidence", "model", "adapter", "reason"} <= set(o)


def test_jsonl_survives_invalid_utf8(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _stdin(monkeypatch, b"\xff\xfe\x00\x80 bad bytes\nhow do I cook rice\r\n")
    assert cli.main(["route", "--jsonl", "--keywords"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 2
    assert out[0]["domain"] == "general"
    assert out[1]["text"] == "how do I cook rice"
    assert out[1]["degraded"] is True


@pytest.mark.parametrize(
    "argv",
    [["route"], ["route", ""], ["route", "   "], ["route", "--pin", "astrology", "hi"],
     ["route", "--previous", "astrology", "hi"]],
)
def test_bad_input_exits_2_with_one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err


def test_real_command_degraded_jsonl_and_exit_codes(tmp_path: Path) -> None:
    """The installed `tara` entry point, as a user runs it (keyword mode keeps the subprocess light)."""
    cmd = [sys.executable, "-m", "tara_desktop.cli", "route"]
    env = {"PATH": "/usr/bin:/bin", "TARA_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [*cmd, "--jsonl", "--keywords"],
        input=b"my knee hurts after running\n\nmy python script crashes with an error\n",
        capture_output=True, env=env, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr
    out = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert [o.get("domain") for o in out] == ["healthcare", None, "technical"]
    assert b"degraded" in run.stderr and b"Traceback" not in run.stderr
    empty = subprocess.run([*cmd, ""], capture_output=True, env=env, timeout=120, check=False)
    assert empty.returncode == 2
    assert empty.stderr.decode().startswith("error: the message is empty")
    assert b"Traceback" not in empty.stderr
