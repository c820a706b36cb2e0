"""The one memory model (tara_desktop.llm.memory): the estimate from a GGUF file and from the catalog, the
context clamp, the automatic budget, and the "fits this computer?" verdicts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tara_desktop.llm import gguf_file, memory
from tara_desktop.llm.catalog import CatalogModel, load_catalog
from tara_desktop.llm.gguf_reader import InvalidGguf
from tara_desktop.llm.memory import GB, MB, Machine, estimate, estimate_catalog, estimate_file, judge
from tests.support.tiny_model import build_tiny_gguf

ROOMY = Machine(available_ram_bytes=20 * GB, total_ram_bytes=24 * GB, free_disk_bytes=100 * GB)


@pytest.fixture(scope="module")
def short_ctx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained (by its metadata) on 512 tokens of context."""
    return build_tiny_gguf(tmp_path_factory.mktemp("mem") / "ctx512.gguf", seed=3, context_length=512)


def test_estimate_from_a_file_adds_up_its_parts(tiny_gguf: Path) -> None:
    info = gguf_file.inspect(tiny_gguf)
    est = estimate_file(tiny_gguf, 1000, 64)
    assert est.source == "file" and est.complete
    assert est.weights_bytes == tiny_gguf.stat().st_size
    assert est.n_ctx == 1000 and est.n_batch == 64
    head = info.n_embd // info.n_head  # type: ignore[operator]
    padded = 1024  # llama.cpp rounds the context up to a multiple of 256
    assert est.kv_cache_bytes == info.n_layers * padded * info.n_head_kv * 2 * head * 2  # type: ignore[operator]
    assert est.compute_bytes > 0 and est.overhead_bytes > 0
    assert est.total_bytes == est.weights_bytes + est.kv_cache_bytes + est.compute_bytes + est.overhead_bytes
    # a longer context needs more: the KV cache and the attention scores grow with it
    assert estimate_file(tiny_gguf, 4000, 64).total_bytes > est.total_bytes


def test_the_context_is_clamped_to_what_the_model_was_trained_on(short_ctx_model: Path) -> None:
    at_train = estimate_file(short_ctx_model, 512, 256)
    asked_more = estimate_file(short_ctx_model, 8192, 256)
    assert asked_more.n_ctx == 512
    assert asked_more == at_train
    assert estimate_file(short_ctx_model, 256, 256).n_ctx == 256  # below it, the setting stands
    assert memory.effective_context(8192, None) == 8192  # no training context known: the setting


def test_the_batch_never_exceeds_the_context(short_ctx_model: Path) -> None:
    assert estimate_file(short_ctx_model, 128, 512).n_batch == 128


def test_a_catalog_entry_with_the_files_numbers_gets_the_files_estimate(tiny_gguf: Path) -> None:
    """One formula: before the download (catalog numbers) and after it (GGUF metadata) the need is the same."""
    info = gguf_file.inspect(tiny_gguf)
    assert info.n_embd and info.n_head
    entry = CatalogModel(
        id="tiny", name="Tiny", file="tiny.gguf", architecture="llama", parameters="tiny", quantization="F32",
        size_bytes=info.size_bytes, context_length=info.context_length, n_layers=info.n_layers,
        n_embd=info.n_embd, n_head_kv=info.n_head_kv, head_dim=info.n_embd // info.n_head,
        n_vocab=info.vocab_size, license="MIT", domains=["general"], source="https://example.org/tiny.gguf",
    )
    from_catalog = estimate_catalog(entry, 2048, 256)
    assert from_catalog is not None and from_catalog.source == "catalog"
    assert from_catalog.total_bytes == estimate_file(tiny_gguf, 2048, 256).total_bytes
    assert entry.kv_cache_bytes(2048) == info.kv_cache_bytes(2048) == memory.kv_cache_bytes(
        memory.shape_of_file(tiny_gguf), 2048)


def test_every_real_catalog_entry_has_the_numbers_for_an_estimate() -> None:
    for entry in load_catalog():
        est = estimate_catalog(entry, 2048, 256)
        assert est is not None and est.complete, entry.id
        assert est.weights_bytes < est.total_bytes < est.weights_bytes * 1.5 + 512 * MB, entry.id


def test_a_catalog_entry_without_a_size_is_unknown() -> None:
    entry = CatalogModel(id="x", name="X", file="x.gguf", architecture="llama", parameters="?", quantization="?",
                         license="MIT", domains=["general"], source="https://example.org/x.gguf")
    assert estimate_catalog(entry, 2048) is None
    fit = judge(None, ROOMY, budget_setting_mb=2048)
    assert fit.verdict == "unknown" and not fit.loadable


def test_automatic_budget_is_half_the_memory_with_a_floor() -> None:
    assert memory.budget_mb(3000, 24 * GB) == 3000
    assert memory.budget_mb(0, 24 * GB) == 12 * 1024
    assert memory.budget_mb(0, 1 * GB) == 1024


def _need(total_mb: float) -> memory.MemoryEstimate:
    shape = memory.ModelShape(weights_bytes=int(total_mb * MB), n_layers=1, n_embd=8, n_head=1, n_head_kv=1,
                              head_dim_k=8, head_dim_v=8, n_vocab=8, n_ctx_train=None)
    est = estimate(shape, 256, 1)
    # adjust the weights so the whole need is exactly total_mb
    return memory.MemoryEstimate(est.weights_bytes - (est.total_bytes - int(total_mb * MB)), est.kv_cache_bytes,
                                 est.compute_bytes, est.overhead_bytes, est.n_ctx, est.n_batch, "file", True)


def test_qwen_3b_on_a_24_gb_machine_fits_the_computer_and_names_the_budget() -> None:
    qwen = load_catalog().get("qwen2.5-3b-instruct-q4_0")
    need = estimate_catalog(qwen, 2048, 256)
    assert need is not None and need.total_mb > 2048
    fit = judge(need, ROOMY, budget_setting_mb=2048, download_bytes=qwen.weights_bytes())
    assert fit.verdict == "over budget" and fit.fits_computer and not fit.within_budget
    assert fit.label == "fits this computer; over your 2.0 GB memory budget"
    assert "raise it in Settings" in fit.reason
    auto = judge(need, ROOMY, budget_setting_mb=0, download_bytes=qwen.weights_bytes())
    assert auto.verdict == "fits" and auto.loadable and auto.budget_mb == 12 * 1024


@pytest.mark.parametrize(
    ("need_mb", "machine", "download", "verdict", "words"),
    [
        (1000, ROOMY, None, "fits", "needs about"),
        (3000, ROOMY, None, "over budget", "raise it in Settings"),
        (30 * 1024, ROOMY, None, "won't fit", "more than this computer's 24.0 GB"),
        (1000, Machine(500 * MB, 8 * GB), None, "low memory", "close other programs"),
        (1000, Machine(4 * GB, 8 * GB, free_disk_bytes=100 * MB), 900 * MB, "no disk space", "free some space"),
        (1000, Machine(4 * GB, 8 * GB, free_disk_bytes=100 * MB), None, "fits", "needs about"),  # on disk already
    ],
)
def test_verdicts(need_mb: float, machine: Machine, download: int | None, verdict: str, words: str) -> None:
    fit = judge(_need(need_mb), machine, budget_setting_mb=2048, download_bytes=download)
    assert fit.verdict == verdict and words in fit.reason
    assert fit.need_bytes == int(need_mb * MB)
    assert fit.loadable == (verdict == "fits")
    assert fit.fits_computer == (verdict in ("fits", "over budget", "low memory"))


def test_the_shape_of_a_file_is_parsed_once_per_version(tmp_path: Path) -> None:
    path = build_tiny_gguf(tmp_path / "m.gguf", seed=1)
    first = memory.shape_of_file(path)
    assert memory.shape_of_file(path) is first
    before = path.stat()
    build_tiny_gguf(path, seed=1, context_length=1024)  # rewritten: a new version of the file
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # never the same timestamp
    assert memory.shape_of_file(path).n_ctx_train == 1024


def test_a_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)
    with pytest.raises(InvalidGguf):
        estimate_file(bad, 2048)


_REPORT = """
import re, sys, llama_cpp
llama_cpp.Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), n_batch=256, n_ubatch=256, n_threads=1,
                verbose=True)
"""


def _llama_cpp_buffers(path: Path, n_ctx: int) -> tuple[float, float]:
    """The KV and compute buffer sizes (MiB) llama.cpp reports when it creates a context for ``path``."""
    import re
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _REPORT, str(path), str(n_ctx)], capture_output=True, text=True,
                          timeout=120, check=True)
    log = done.stdout + done.stderr
    kv = re.search(r"KV buffer size =\s*([\d.]+) MiB", log)
    compute = re.search(r"compute buffer size =\s*([\d.]+) MiB", log)
    assert kv and compute, log[-2000:]
    return float(kv.group(1)), float(compute.group(1))


@pytest.mark.parametrize(("vocab", "n_embd", "n_ctx"), [(None, 64, 512), (None, 64, 4096), (32000, 256, 512),
                                                        (32000, 256, 4096)])
def test_the_estimate_matches_what_llama_cpp_allocates(tmp_path: Path, vocab: int | None, n_embd: int,
                                                       n_ctx: int) -> None:
    """The KV cache is exactly llama.cpp's; the compute estimate covers its compute buffer without
    overstating it much, whether the logits (large vocabulary) or the attention scores (long context)
    dominate."""
    path = build_tiny_gguf(tmp_path / "m.gguf", seed=2, n_embd=n_embd, n_head=8, n_head_kv=2, vocab_size=vocab,
                           context_length=8192)
    est = estimate_file(path, n_ctx, 256)
    kv_mib, compute_mib = _llama_cpp_buffers(path, n_ctx)
    assert est.kv_cache_bytes / MB == pytest.approx(kv_mib, abs=0.01)
    assert compute_mib <= est.compute_bytes / MB <= compute_mib * 1.25 + 1


def test_the_recommendation_is_the_largest_model_that_would_really_load() -> None:
    small, mid, big, huge = _need(800), _need(1500), _need(3000), _need(30 * 1024)
    fits = [(name, judge(n, ROOMY, budget_setting_mb=2048)) for name, n in
            (("small", small), ("mid", mid), ("big", big), ("huge", huge))]
    assert [f.verdict for _n, f in fits] == ["fits", "fits", "over budget", "won't fit"]
    assert memory.best_fit(fits) == "mid"  # big fits the computer but the pool would refuse it
    assert memory.best_fit(fits[2:]) is None
