"""Tiny, real, random-weight llama GGUF models (and GGUF LoRA adapters for them), built in seconds.

No pretrained weights can be downloaded on the machines TARA is developed and tested on, so tests,
and benchmarks build their own models here (tests/support: never shipped) with the ``gguf`` package. The files are real:
llama-cpp-python loads them, tokenizes with their byte-level BPE tokenizer, applies their ChatML
chat template and generates from them. The weights are random, so the text is gibberish, but it is
deterministic for a seed (greedy decoding gives the same tokens every time).

Design notes
- Tokenizer: GPT-2 style byte-level BPE (``tokenizer.ggml.model = "gpt2"``): the 256 byte tokens, a few
  hundred merges learned from a small built-in English text, and the special tokens
  ``<|endoftext|>`` (BOS), ``<|im_start|>``, ``<|im_end|>`` (EOS).
- Residual dimension 0 carries a constant that no layer writes to, and ``output.weight`` gives that
  dimension a large negative weight for special tokens and non-printable bytes. This acts as a logit
  bias, so generation produces readable ASCII and never stops early on a random EOS. LoRA adapters
  built here leave that dimension alone too.
- K-quants need rows divisible by 256: pass ``n_embd=256`` (or a multiple) when the model will be
  quantized with ``llama_model_quantize``.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from tara_desktop.errors import TaraError
from tara_desktop.llm.chat_template import DEFAULT_CHAT_TEMPLATE

CHATML_TEMPLATE = DEFAULT_CHAT_TEMPLATE  # ChatML, written once (tara_desktop.llm.engine)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# A small English text the tokenizer's merges are learned from: common words of every domain TARA serves.
_MERGE_CORPUS = """
Hello, how are you today? I am fine, thank you. What can I do for you?
The patient should drink water, rest, and see a doctor if the fever lasts more than three days.
Our business plan needs a clear budget, a market study, and a list of the costs for the first year.
The teacher explains the lesson, the students ask questions, and everyone learns something new.
Write a short story about a dragon who wants to paint the sunset over the quiet sea.
A good leader listens to the team, gives clear goals, and takes responsibility for decisions.
The program reads the file, parses the data, and prints the result; check the error message.
Please tell me more about your question so that I can help you with the answer.
This is the time to think about health, money, learning, art, people and technology.
There are many ways to start: make a list, set a goal, and take one small step every day.
"""

_GPT2_SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+""")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character map (llama.cpp decodes with the same map)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


BYTE_TO_UNICODE = _bytes_to_unicode()
UNICODE_TO_BYTE = {c: b for b, c in BYTE_TO_UNICODE.items()}


@dataclass(frozen=True)
class TinyTokenizer:
    """The vocabulary written into the GGUF: token strings, their types, merges and special ids."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int
    eos_id: int
    im_start_id: int

    @property
    def n_vocab(self) -> int:
        return len(self.tokens)

    def token_bytes(self, token_id: int) -> bytes:
        text = self.tokens[token_id]
        if self.token_types[token_id] == 3:  # control token
            return text.encode("utf-8")
        return bytes(UNICODE_TO_BYTE[c] for c in text)


def build_tokenizer(n_merges: int = 300, *, vocab_size: int | None = None, seed: int = 0) -> TinyTokenizer:
    """A byte-level BPE tokenizer: 256 byte tokens + merges learned from the built-in text + specials.

    ``vocab_size`` pads the vocabulary to a real model's size (32,000 for Llama 2) with further
    merges of existing word-piece tokens (deterministic for ``seed``), so loading costs what a real
    tokenizer costs."""
    words: Counter[tuple[str, ...]] = Counter()
    for piece in _GPT2_SPLIT.findall(_MERGE_CORPUS.strip()):
        words[tuple(BYTE_TO_UNICODE[b] for b in piece.encode("utf-8"))] += 1
    tokens = [BYTE_TO_UNICODE[b] for b in range(256)]
    known = set(tokens)
    merges: list[str] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, freq in words.items():
            for a, b in pairwise(word):
                pairs[(a, b)] += freq
        if not pairs:
            break
        # most frequent pair; ties broken by the pair itself so the result is fully deterministic
        (a, b), count = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if count < 2:
            break
        merged = a + b
        merges.append(f"{a} {b}")
        if merged not in known:
            known.add(merged)
            tokens.append(merged)
        new_words: Counter[tuple[str, ...]] = Counter()
        for word, freq in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += freq
        words = new_words
    if vocab_size is not None and vocab_size > len(tokens) + len(SPECIAL_TOKENS):
        rng = np.random.default_rng(seed + 104729)
        alpha = [BYTE_TO_UNICODE[b] for b in range(ord("a"), ord("z") + 1)]
        pool = [t for t in tokens[256:] if t.strip("Ġ").isalpha()] or alpha
        target = vocab_size - len(SPECIAL_TOKENS)
        while len(tokens) < target:
            draws = rng.random((2 * (target - len(tokens)) + 64, 3)).tolist()
            for u, v, w in draws:
                if len(tokens) >= target:
                    break
                a = pool[int(u * len(pool))]
                b = alpha[int(w * 26)] if v < 0.5 else pool[int(w * len(pool))].lstrip("Ġ")
                if b not in known:
                    b = alpha[int(w * 26)]
                merged = a + b
                if merged in known or len(merged) > 16:
                    continue
                known.add(merged)
                tokens.append(merged)
                merges.append(f"{a} {b}")
                pool.append(merged)
    types = [1] * len(tokens)
    first_special = len(tokens)
    tokens.extend(SPECIAL_TOKENS)
    types.extend([3] * len(SPECIAL_TOKENS))
    return TinyTokenizer(
        tokens=tokens,
        token_types=types,
        merges=merges,
        bos_id=first_special,
        eos_id=first_special + 2,
        im_start_id=first_special + 1,
    )


def _printable(data: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in data)


def _atomic_write(out_path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temp file beside ``out_path``, fsync it and move it into place."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; models are ordinary files
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def build_tiny_gguf(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int | None = None,
    context_length: int = 4096,
    f16: bool = False,
    chat_template: str | None = CHATML_TEMPLATE,
    name: str = "tara-tiny",
    vocab_size: int | None = None,
) -> Path:
    """Write a tiny random-weight llama-architecture GGUF to ``path`` and return the path.

    Deterministic for a given seed and shape. ``chat_template=None`` writes a model without a chat
    template (to test the engine's default). ``f16`` stores the 2-D weights in float16 (smaller files,
    the usual layout of real models). ``vocab_size`` gives it a vocabulary as large as a real model's
    (see :func:`build_tokenizer`); by default it has a few hundred tokens.
    """
    import gguf

    if n_embd % n_head or n_head % n_head_kv:
        raise TaraError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head}) and n_head by n_head_kv")
    n_ff = n_ff or 2 * n_embd
    head_dim = n_embd // n_head
    tok = build_tokenizer(vocab_size=vocab_size)
    rng = np.random.default_rng(seed)
    wtype = np.float16 if f16 else np.float32

    def mat(rows: int, cols: int, std: float) -> np.ndarray[Any, Any]:
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    # Token embeddings; residual dim 0 is a constant "bias channel" (see module notes).
    embd = mat(tok.n_vocab, n_embd, 1.0)
    embd[:, 0] = 1.0
    tensors: dict[str, np.ndarray[Any, Any]] = {"token_embd.weight": embd.astype(wtype)}
    in_std = 1.0 / np.sqrt(n_embd)
    for i in range(n_layer):
        p = f"blk.{i}."
        attn_out = mat(n_embd, n_embd, in_std)
        attn_out[0, :] = 0.0
        ffn_down = mat(n_embd, n_ff, 1.0 / np.sqrt(n_ff))
        ffn_down[0, :] = 0.0
        tensors[p + "attn_norm.weight"] = np.ones(n_embd, dtype=np.float32)
        tensors[p + "attn_q.weight"] = mat(n_embd, n_embd, in_std).astype(wtype)
        tensors[p + "attn_k.weight"] = mat(n_head_kv * head_dim, n_embd, in_std).astype(wtype)
        tensors[p + "attn_v.weight"] = mat(n_head_kv * head_dim, n_embd, in_std).astype(wtype)
        tensors[p + "attn_output.weight"] = attn_out.astype(wtype)
        tensors[p + "ffn_norm.weight"] = np.ones(n_embd, dtype=np.float32)
        tensors[p + "ffn_gate.weight"] = mat(n_ff, n_embd, in_std).astype(wtype)
        tensors[p + "ffn_up.weight"] = mat(n_ff, n_embd, in_std).astype(wtype)
        tensors[p + "ffn_down.weight"] = ffn_down.astype(wtype)
    tensors["output_norm.weight"] = np.ones(n_embd, dtype=np.float32)
    # logits have a spread of a few units, so greedy and sampled outputs both vary with the input
    out = mat(tok.n_vocab, n_embd, 3.0 / np.sqrt(n_embd))
    out[:, 0] = 0.0
    for t in range(tok.n_vocab):
        if tok.token_types[t] == 3 or not _printable(tok.token_bytes(t)):
            out[t, 0] = -30.0
    tensors["output.weight"] = out.astype(wtype)

    def write(tmp: Path) -> None:
        w = gguf.GGUFWriter(str(tmp), arch="llama")
        w.add_name(name)
        w.add_type(gguf.GGUFType.MODEL)
        w.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32))
        w.add_vocab_size(tok.n_vocab)
        w.add_context_length(context_length)
        w.add_embedding_length(n_embd)
        w.add_block_count(n_layer)
        w.add_feed_forward_length(n_ff)
        w.add_head_count(n_head)
        w.add_head_count_kv(n_head_kv)
        w.add_rope_dimension_count(head_dim)
        w.add_rope_freq_base(10000.0)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("default")
        w.add_token_list(tok.tokens)
        w.add_token_types(tok.token_types)
        w.add_token_merges(tok.merges)
        w.add_bos_token_id(tok.bos_id)
        w.add_eos_token_id(tok.eos_id)
        w.add_add_bos_token(False)
        w.add_add_eos_token(False)
        if chat_template is not None:
            w.add_chat_template(chat_template)
        for tname, arr in tensors.items():
            w.add_tensor(tname, arr)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    return _atomic_write(Path(path), write)


_LORA_TARGETS = ("attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up")


def build_tiny_lora(
    base_gguf: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    seed: int = 0,
    rank: int = 4,
    alpha: float | None = None,
    strength: float = 1.0,
    targets: tuple[str, ...] = _LORA_TARGETS,
) -> Path:
    """Write a GGUF LoRA adapter for the llama GGUF ``base_gguf`` (any model from :func:`build_tiny_gguf`,
    or any llama GGUF with the usual tensor names) and return ``out_path``.

    The adapter targets (by default) q/k/v and the FFN gate/up projections of every layer (``targets``:
    any of attn_q, attn_k, attn_v, ffn_gate, ffn_up; PEFT's default is q and v) with random A/B matrices
    whose product is about ``strength`` times the size of the base weights, so it visibly changes the
    output. Layout as llama.cpp expects (see convert_lora_to_gguf.py): ``general.type = "adapter"``,
    ``adapter.type = "lora"``, ``adapter.lora.alpha``, tensors ``<base>.lora_a`` (rank x in) and
    ``<base>.lora_b`` (out x rank) in numpy order.
    """
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    arch_field = reader.get_field("general.architecture")
    if arch_field is None:
        raise TaraError(f"{base_gguf}: no general.architecture in the file; pass a model GGUF as the base")
    arch = str(arch_field.contents())
    shapes: dict[str, tuple[int, int]] = {}
    for t in reader.tensors:
        kind = t.name.split(".")
        if len(kind) == 4 and kind[0] == "blk" and kind[2] in targets and kind[3] == "weight":
            n_in, n_out = int(t.shape[0]), int(t.shape[1])  # ggml order: ne[0] = in, ne[1] = out
            shapes[t.name] = (n_out, n_in)
    if not shapes:
        raise TaraError(f"{base_gguf}: no attention/FFN weights found to adapt; pass a llama-style model GGUF")
    rng = np.random.default_rng(seed + 7919)
    alpha = float(rank if alpha is None else alpha)

    tensors: dict[str, np.ndarray[Any, Any]] = {}
    for tname in sorted(shapes):
        n_out, n_in = shapes[tname]
        # delta = B @ A * alpha/rank; entries of about strength/sqrt(n_in), like the base weights
        a = rng.standard_normal((rank, n_in)) / np.sqrt(n_in)
        b = rng.standard_normal((n_out, rank)) * (strength / np.sqrt(rank)) * (rank / alpha)
        tensors[tname[: -len(".weight")] + ".weight.lora_a"] = a.astype(np.float32)
        tensors[tname[: -len(".weight")] + ".weight.lora_b"] = b.astype(np.float32)

    def write(tmp: Path) -> None:
        w = gguf.GGUFWriter(str(tmp), arch=arch)
        w.add_name("tara-tiny-lora")
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for tname, arr in tensors.items():
            w.add_tensor(tname, arr)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    return _atomic_write(Path(out_path), write)
