"""Tokenizer metadata for a GGUF: a Hugging Face tokenizer folder → ``tokenizer.ggml.*`` keys.

Follows llama.cpp's ``convert_hf_to_gguf.py``: byte-level BPE tokenizers (GPT-2, DialoGPT, Llama 3,
Qwen2, and the tokenizers TARA trains itself) become ``tokenizer.ggml.model = "gpt2"`` with the token
list, token types, merges and a named pre-tokenizer; SentencePiece-style tokenizers stored as
``tokenizer.json`` (Llama 2, Phi-3) become ``"llama"`` with scores. Special tokens (bos, eos, pad, unk),
the add-bos/eos flags and the chat template come through ``gguf.SpecialVocab``.

The pre-tokenizer name tells llama.cpp which split regex to use. It is read from the structure of
``tokenizer.json`` (GPT-2's byte-level regex, or the exact Llama 3 / Qwen2 split patterns); otherwise it is
found the way the reference does, by a hash of how the tokenizer encodes a fixed check text.
"""

from __future__ import annotations

import json
import logging
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tara_desktop.errors import TaraError

if TYPE_CHECKING:
    from gguf import GGUFWriter

log = logging.getLogger(__name__)

# The check text and hashes of llama.cpp's get_vocab_base_pre(), for the families TARA converts.
_CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you "
    "sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
_KNOWN_HASHES = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3.x
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",  # Llama 3 variants
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5/2/2.5
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",  # GPT-2, DialoGPT
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "fcace8b9cac38ce847670c970cd5892031a753a1ef381abd1d9af00f713da085": "phi-2",
}
# Split patterns of the pre-tokenizers (as written in tokenizer.json) → llama.cpp's name for them.
_LLAMA3_SPLIT = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_QWEN2_SPLIT = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_KNOWN_SPLITS = {_LLAMA3_SPLIT: "llama-bpe", _QWEN2_SPLIT: "qwen2"}

# gguf.TokenType values (kept here so the module imports without gguf)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaraError(f"{path} cannot be read ({exc}); the model folder is damaged, copy it again") from None
    if not isinstance(data, dict):
        raise TaraError(f"{path} is not a JSON object; the model folder is damaged, copy it again")
    return data


def _structural_pre(tok_json: dict[str, Any]) -> str | None:
    """Name the pre-tokenizer from tokenizer.json's structure, or None when it is not one we know."""
    pre = tok_json.get("pre_tokenizer") or {}
    kind = pre.get("type")
    if kind == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    if kind == "Sequence":
        parts = pre.get("pretokenizers") or []
        splits = [p for p in parts if p.get("type") == "Split"]
        levels = [p for p in parts if p.get("type") == "ByteLevel"]
        if len(splits) == 1 and len(levels) == 1 and not levels[0].get("use_regex", True):
            regex = (splits[0].get("pattern") or {}).get("Regex")
            return _KNOWN_SPLITS.get(regex or "")
        if not splits and len(levels) == 1 and levels[0].get("use_regex", True):
            return "gpt-2"
    return None


def bpe_pre_tokenizer(model_dir: Path, tok_json: dict[str, Any]) -> str:
    """llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer folder."""
    name = _structural_pre(tok_json)  # exact for the split patterns we know; no transformers import needed
    if name is None:
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            digest = sha256(str(tokenizer.encode(_CHECK_TEXT)).encode()).hexdigest()
            name = _KNOWN_HASHES.get(digest)
        except Exception as exc:  # a tokenizer transformers cannot load
            log.info("tokenizer hash check skipped: %s", type(exc).__name__)
    if name is None:
        raise TaraError(
            f"the tokenizer in {model_dir} splits text in a way TARA's converter does not know; "
            "export a Llama 3, Qwen2, GPT-2 or Phi-3 family model"
        )
    return name


def _bpe_tokens(tok_json: dict[str, Any], vocab_size: int) -> tuple[list[str], list[int]]:
    vocab: dict[str, int] = dict(tok_json["model"].get("vocab") or {})
    added = {int(t["id"]): t for t in tok_json.get("added_tokens") or []}
    by_id = {i: t for t, i in vocab.items()}
    for i, t in added.items():
        by_id[i] = t["content"]
    if by_id and max(by_id) >= vocab_size:
        raise TaraError(
            f"the tokenizer has token id {max(by_id)} but the model's vocab_size is {vocab_size}; "
            "the tokenizer does not belong to this model"
        )
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif i in added:
            tokens.append(added[i]["content"])
            token = added[i]["content"]
            looks_special = token.startswith("<|") and token.endswith("|>")
            types.append(CONTROL if added[i].get("special") or looks_special else USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(NORMAL)
    return tokens, types


def add_tokenizer(writer: GGUFWriter, model_dir: Path, vocab_size: int) -> dict[str, Any]:
    """Write the tokenizer of ``model_dir`` into ``writer``; return a summary (model, pre, n_tokens)."""
    import gguf

    tok_path = model_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise TaraError(
            f"{model_dir} has no tokenizer.json; save the tokenizer with the model "
            "(tokenizer.save_pretrained) and export again"
        )
    tok_json = _read_json(tok_path)
    model = tok_json.get("model") or {}
    kind = model.get("type")
    byte_level = "ByteLevel" in json.dumps(tok_json.get("pre_tokenizer") or {}) or "ByteLevel" in json.dumps(
        tok_json.get("decoder") or {}
    )
    if kind == "BPE" and byte_level and not model.get("byte_fallback"):
        tokens, types = _bpe_tokens(tok_json, vocab_size)
        pre = bpe_pre_tokenizer(model_dir, tok_json)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
        if not special.merges:
            raise TaraError(f"{tok_path} has no merges; the tokenizer is incomplete, save it again")
        special.add_to_gguf(writer, quiet=True)
        return {"model": "gpt2", "pre": pre, "n_tokens": len(tokens), "chat_template": bool(special.chat_template)}
    if kind in ("BPE", "Unigram"):  # SentencePiece converted to tokenizer.json (Llama 2, Phi-3)
        vocab = gguf.LlamaHfVocab(model_dir)
        spm_tokens: list[bytes] = []
        scores: list[float] = []
        spm_types: list[int] = []
        for text, score, toktype in vocab.all_tokens():
            spm_tokens.append(text)
            scores.append(score)
            spm_types.append(int(toktype))
        while len(spm_tokens) < vocab_size:
            spm_tokens.append(f"[PAD{len(spm_tokens)}]".encode())
            scores.append(-1000.0)
            spm_types.append(UNUSED)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(spm_tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(spm_types)
        special = gguf.SpecialVocab(model_dir, n_vocab=len(spm_tokens))
        special.add_to_gguf(writer, quiet=True)
        return {"model": "llama", "pre": "default", "n_tokens": len(spm_tokens), "chat_template": bool(special.chat_template)}
    raise TaraError(
        f"{tok_path} holds a {kind or 'unknown'} tokenizer, which TARA's converter does not support; "
        "export a model with a BPE tokenizer (Llama 3, Qwen2, GPT-2, Phi-3)"
    )
