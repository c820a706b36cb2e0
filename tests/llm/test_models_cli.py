"""``tara models list|add|remove|download`` through the real CLI, profile and a local HTTP server."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tara_desktop.cli import main as tara
from tara_desktop.errors import TaraError
from tara_desktop.llm.model_check import validate_gguf
from tara_desktop.profile import Profile
from tests.support.tiny_model import build_tiny_lora

from .gguf_corpus import write_valid_gguf

PROJECT = Path(__file__).resolve().parents[2]


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = write_valid_gguf(tmp_path / "mine.gguf")
    assert tara(["models", "add", str(model), "--name", "My model"]) == 0
    assert capsys.readouterr().out.startswith("added My model: ")

    assert tara(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    mine = rows[0]
    assert mine["name"] == "My model" and mine["status"] == "installed" and mine["loaded"] is False
    assert mine["fit"] == "fits" and mine["size_bytes"] == model.stat().st_size
    ids = {r["catalog_id"] for r in rows}
    assert {"llama-3.1-8b-instruct-q4_k_m", "phi-3.5-mini-instruct-q4_k_m", "qwen2.5-3b-instruct-q4_0",
            "llama-3.2-1b-instruct-q4_0", "smollm2-135m-instruct"} <= ids

    assert tara(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "SIZE", "NEEDS", "FITS", "THIS", "COMPUTER", "LOADED"]
    assert "My model" in out and "llama-3.1-8b-instruct-q4_k_m  available" in out

    assert tara(["models", "add", str(model)]) == 2
    err = capsys.readouterr().err
    assert _lines(err) == [f"error: {model} is already registered as 'My model': nothing to do"]

    assert tara(["models", "remove", "my model"]) == 0
    assert "was not deleted" in capsys.readouterr().out
    assert model.exists()
    assert tara(["models", "remove", "my model"]) == 2
    assert _lines(capsys.readouterr().err)[0].startswith("error: no installed model is called 'my model'")


def _machine(monkeypatch: pytest.MonkeyPatch, available_gb: float, total_gb: float, disk_gb: float) -> None:
    from tara_desktop.llm import memory

    m = memory.Machine(int(available_gb * memory.GB), int(total_gb * memory.GB), int(disk_gb * memory.GB))
    monkeypatch.setattr(memory.Machine, "now", classmethod(lambda cls, models_dir=None: m))


def _budget(root: Path, mb: int) -> None:
    cfg = root / "configs" / "config.yaml"
    text = cfg.read_text(encoding="utf-8")
    import re

    cfg.write_text(re.sub(r"memory_budget_mb: *\d+", f"memory_budget_mb: {mb}", text), encoding="utf-8")


def test_list_says_what_fits_this_computer_and_what_the_budget_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "install"
    shutil.copytree(PROJECT / "configs", root / "configs")
    shutil.copytree(PROJECT / "models", root / "models", ignore=shutil.ignore_patterns("*.gguf", "voice"))
    monkeypatch.setenv("TARA_INSTALL_DIR", str(root))
    _budget(root, 2048)
    _machine(monkeypatch, available_gb=20, total_gb=24, disk_gb=100)
    assert tara(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    qwen = rows["qwen2.5-3b-instruct-q4_0"]
    assert qwen["fit"] == "over budget" and qwen["fits_computer"] and not qwen["within_budget"]
    assert qwen["fit_label"] == "fits this computer; over your 2.0 GB memory budget"
    assert rows["llama-3.2-1b-instruct-q4_0"]["fit"] == "fits"
    assert [n for n, r in rows.items() if r["recommended"]] == ["llama-3.2-1b-instruct-q4_0"]  # within the budget

    assert tara(["models", "list"]) == 0
    captured = capsys.readouterr()
    line = next(x for x in captured.out.splitlines() if x.startswith("qwen2.5-3b-instruct-q4_0 "))
    assert "fits this computer; over your 2.0 GB memory budget" in line
    assert "note: qwen2.5-3b-instruct-q4_0: needs about" in captured.err and "raise it in Settings" in captured.err
    assert "this computer: 20.0 GB of 24.0 GB memory free, 100.0 GB free disk; memory budget 2.0 GB" in captured.out
    assert "recommended for this computer: llama-3.2-1b-instruct-q4_0" in captured.out

    _budget(root, 0)  # automatic: half of the memory
    assert tara(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["qwen2.5-3b-instruct-q4_0"]["fit"] == "fits"
    assert [n for n, r in rows.items() if r["recommended"]] == ["llama-3.1-8b-instruct-q4_k_m"]  # 5.4 of 12 GB

    _machine(monkeypatch, available_gb=3, total_gb=8, disk_gb=1.5)
    assert tara(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["qwen2.5-3b-instruct-q4_0"]["fit"] == "no disk space"  # a 2 GB download, 1.5 GB free
    assert rows["llama-3.2-1b-instruct-q4_0"]["fit"] == "fits" and rows["llama-3.2-1b-instruct-q4_0"]["recommended"]
    assert rows["llama-3.1-8b-instruct-q4_k_m"]["fit"] == "no disk space"


def test_add_a_bad_file_is_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_text("not a model\n")
    assert tara(["models", "add", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert _lines(captured.err) == ["error: the file is text (it starts with 'not a model?'), not a GGUF model: choose a .gguf model file"]


def _no_gguf_chat_model(kind: str, tmp_path: Path, tiny_gguf: Path) -> Path:
    path = tmp_path / f"{kind}.gguf"
    if kind == "garbage":
        path.write_bytes(bytes((i * 37 + 11) % 256 for i in range(4096)))
    elif kind == "truncated-header":
        path.write_bytes(tiny_gguf.read_bytes()[:300])
    elif kind == "truncated-data":
        path.write_bytes(tiny_gguf.read_bytes()[:-5000])
    elif kind == "header-only":
        from tests.llm.test_not_a_chat_model import GOOD_TEMPLATE, _gguf

        _gguf(path, "llama", tensors=False, chat_template=GOOD_TEMPLATE)
    else:
        path.write_bytes(build_tiny_lora(tiny_gguf, tmp_path / "lora-src.gguf", seed=3).read_bytes())
    return path


@pytest.mark.parametrize("kind", ["garbage", "truncated-header", "truncated-data", "header-only", "adapter"])
def test_add_refuses_what_the_validator_refuses_and_registers_nothing(
    kind: str, tmp_path: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _no_gguf_chat_model(kind, tmp_path, tiny_gguf)
    with pytest.raises(TaraError) as refused:
        validate_gguf(path)  # the validator every load goes through
    assert tara(["models", "add", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert _lines(captured.err) == [f"error: {refused.value}"]
    assert tara(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert not [r for r in rows if r["status"] == "installed"], "nothing was registered"


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the install (configs) with a catalog of our own, so no test ever touches the internet."""
    root = tmp_path / "install"
    shutil.copytree(PROJECT / "configs", root / "configs")
    (root / "models").mkdir()
    monkeypatch.setenv("TARA_INSTALL_DIR", str(root))
    return root


def _catalog(root: Path, source: str, sha256: str | None) -> None:
    sha = f"'{sha256}'" if sha256 else "null"
    (root / "models" / "catalog.yaml").write_text(
        "models:\n"
        "  - {id: tara-demo, name: Demo, file: tara-demo.gguf, bundled: true, architecture: llama,\n"
        "     parameters: tiny, quantization: F16, ram_mb: 64, license: Apache-2.0, domains: [general]}\n"
        "  - {id: small, name: Small, file: small.gguf, architecture: llama, parameters: 1M, quantization: Q8_0,\n"
        f"     ram_mb: 64, license: MIT, domains: [general], source: '{source}', sha256: {sha}}}\n",
        encoding="utf-8",
    )


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    served = tmp_path / "served"
    served.mkdir()
    data = write_valid_gguf(served / "small.gguf").read_bytes()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", data
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


def test_download_a_catalog_model_into_the_user_models_dir(
    install: Path, file_server: tuple[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, data = file_server
    _catalog(install, f"{base}/small.gguf", hashlib.sha256(data).hexdigest())
    assert tara(["models", "download", "small"]) == 0
    captured = capsys.readouterr()
    assert "100.0%" in captured.err  # the progress bar
    home = tmp_path / "tara-home"
    dest = home / "models" / "small.gguf"
    assert dest.read_bytes() == data
    assert "downloaded small to" in captured.out
    with Profile.open(home) as p:
        from tara_desktop.llm.library import ModelLibrary

        (model,) = ModelLibrary(p).models()
        assert model.name == "small" and model.origin == "downloaded" and model.catalog_id == "small"
        assert [e.event for e in p.audit.entries()].count("model_import") == 1
    assert tara(["models", "download", "small"]) == 0
    assert "already downloaded" in capsys.readouterr().out


def test_download_with_no_network_is_one_error_line(install: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _catalog(install, f"http://127.0.0.1:{port}/small.gguf", None)
    assert tara(["models", "download", "small"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = _lines(captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach 127.0.0.1")
    assert "check the internet connection" in lines[0]
    assert lines[0].endswith("; until then TARA answers with its bundled Demo, which works offline")


def test_download_refuses_bundled_and_unknown_models(install: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _catalog(install, "https://example.invalid/small.gguf", None)
    assert tara(["models", "download", "tara-demo"]) == 2
    assert _lines(capsys.readouterr().err)[0].startswith("error: tara-demo ships with TARA")
    assert tara(["models", "download", "gpt-9"]) == 2
    assert _lines(capsys.readouterr().err) == ["error: no model called 'gpt-9' in the catalog: choose one of tara-demo, small"]


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        tara(["models", "frobnicate"])
    assert exc.value.code == 2
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_validate_checks_the_catalog_sha256_of_a_known_file(
    install: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write_valid_gguf(tmp_path / "small.gguf")
    _catalog(install, "https://example.invalid/small.gguf", hashlib.sha256(f.read_bytes()).hexdigest())
    assert tara(["gguf", "validate", str(f)]) == 0
    assert "sha256 matches the catalog" in capsys.readouterr().out
    _catalog(install, "https://example.invalid/small.gguf", "ab" * 32)
    assert tara(["gguf", "validate", str(f)]) == 2
    assert _lines(capsys.readouterr().err)[0].startswith("error: the file's sha256 is ")
