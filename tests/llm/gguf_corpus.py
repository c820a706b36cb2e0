"""Build small GGUF files for tests: a valid one (written with the ``gguf`` package's GGUFWriter) and a
corpus of damaged ones (truncated, wrong magic/version, absurd counts and lengths, bad types, tensor data
outside the file, misaligned offsets, random bytes, empty, text), each with the words its error must say.

Also files whose damage is confined to metadata (bad UTF-8, a broken chat template, a duplicate key, a
wrong ``general.alignment``) that ``tara gguf repair`` must be able to fix.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GOOD_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

N_LAYERS = 2
N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 2
VOCAB = ["<unk>", "<s>", "</s>", "a", "b", "c", "hello", "world"]


def write_valid_gguf(
    path: Path,
    *,
    chat_template: str | None = GOOD_TEMPLATE,
    alignment: int | None = None,
    extra_strings: dict[str, str] | None = None,
    seed: int = 0,
    tokens: list[Any] | None = None,
    token_types: list[int] | None = None,
) -> Path:
    """A small, structurally valid llama-style GGUF (not meant to run: the tensors are few and random)."""
    import gguf

    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name("tiny test model")
    w.add_context_length(256)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYERS)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_feed_forward_length(128)
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q8_0))
    w.add_tokenizer_model("llama")
    if tokens is None:
        w.add_token_list(VOCAB)
    else:
        w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_token_types(token_types if token_types is not None else [1] * len(VOCAB))
    if chat_template is not None:
        w.add_chat_template(chat_template)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value in (extra_strings or {}).items():
        w.add_string(key, value)
    w.add_tensor("token_embd.weight", rng.standard_normal((len(VOCAB), N_EMBD)).astype(np.float32))
    for i in range(N_LAYERS):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(8, dtype=np.float32))  # 32 bytes: odd padding
        q = gguf.quants.quantize(rng.standard_normal((N_EMBD, N_EMBD)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(f"blk.{i}.attn_q.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(f"blk.{i}.attn_k.weight", rng.standard_normal((N_EMBD // 2, N_EMBD)).astype(np.float16))
        q2 = gguf.quants.quantize(rng.standard_normal((N_EMBD, N_EMBD)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(f"blk.{i}.ffn_down.weight", q2, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@dataclass(frozen=True)
class Layout:
    """Byte positions of the fields the corpus mutates."""

    kv_starts: list[tuple[str, int, int]]  # key, start of the entry, position of its value type
    tensors: list[tuple[str, int, int, int]]  # name, position of n_dims, of the type, of the offset
    header_end: int


def layout(data: bytes) -> Layout:
    """Walk a (valid) GGUF header and return where its fields are."""
    pos = 24
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)

    def string(p: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", data, p)
        return data[p + 8 : p + 8 + n].decode("utf-8", "replace"), p + 8 + n

    def value(vt: int, p: int) -> int:
        sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
        if vt in sizes:
            return p + sizes[vt]
        if vt == 8:
            return string(p)[1]
        sub, count = struct.unpack_from("<IQ", data, p)
        p += 12
        for _ in range(count):
            p = value(sub, p)
        return p

    kvs = []
    for _ in range(n_kv):
        start = pos
        key, pos = string(pos)
        (vt,) = struct.unpack_from("<I", data, pos)
        kvs.append((key, start, pos))
        pos = value(vt, pos + 4)
    tensors = []
    for _ in range(n_tensors):
        name, pos = string(pos)
        (nd,) = struct.unpack_from("<I", data, pos)
        dims_pos = pos
        pos += 4 + 8 * nd
        tensors.append((name, dims_pos, pos, pos + 4))
        pos += 12
    return Layout(kvs, tensors, pos)


def _put(data: bytes, pos: int, fmt: str, value: float) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, pos, value)
    return bytes(b)


@dataclass(frozen=True)
class BadFile:
    name: str
    data: bytes
    expect: str  # a phrase the one-line error must contain


def bad_files(valid: bytes, seed: int = 0) -> list[BadFile]:
    """The corpus of damaged files built from ``valid`` (the bytes of :func:`write_valid_gguf`)."""
    lay = layout(valid)
    rng = random.Random(seed)
    out: list[BadFile] = [
        BadFile("empty", b"", "empty"),
        BadFile("text", b"This is a note about my model.\nIt is not a model.\n" * 20, "text"),
        BadFile("lfs_pointer", b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 4\n", "Git LFS"),
        BadFile("html", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "web page"),
        BadFile("random", bytes(rng.randrange(256) for _ in range(4096)), "magic"),
        BadFile("three_bytes", b"GGU", "3 bytes"),
        BadFile("wrong_magic", b"GGUX" + valid[4:], "magic"),
        BadFile("version_0", _put(valid, 4, "<I", 0), "version 0"),
        BadFile("version_1", _put(valid, 4, "<I", 1), "version 1"),
        BadFile("version_7", _put(valid, 4, "<I", 7), "version 7"),
        BadFile("big_endian", _put(valid, 4, ">I", 3), "big-endian"),
        BadFile("huge_tensor_count", _put(valid, 8, "<Q", 1 << 60), "tensors"),
        BadFile("huge_kv_count", _put(valid, 16, "<Q", 1 << 61), "metadata entries"),
        BadFile("huge_key_length", _put(valid, 24, "<Q", 1 << 62), "claims to be"),
        BadFile("bad_value_type", _put(valid, lay.kv_starts[1][2], "<I", 99), "unknown value type"),
    ]
    tokens = next(k for k in lay.kv_starts if k[0] == "tokenizer.ggml.tokens")
    out.append(BadFile("nested_array", _put(valid, tokens[2] + 4, "<I", 9), "array of arrays"))
    out.append(BadFile("huge_array", _put(valid, tokens[2] + 8, "<Q", 1 << 40), "claims"))
    name_kv = next(k for k in lay.kv_starts if k[0] == "general.name")
    out.append(BadFile("huge_string_value", _put(valid, name_kv[2] + 4, "<Q", 1 << 50), "claims to be"))
    _name, dims_pos, type_pos, off_pos = lay.tensors[3]
    out.append(BadFile("bad_tensor_type", _put(valid, type_pos, "<I", 77), "unknown data type"))
    out.append(BadFile("too_many_dims", _put(valid, dims_pos, "<I", 9), "dimensions"))
    out.append(BadFile("zero_dim", _put(valid, dims_pos + 4, "<Q", 0), "impossible shape"))
    out.append(BadFile("absurd_dim", _put(valid, dims_pos + 4, "<Q", 1 << 62), "impossible shape"))
    (off,) = struct.unpack_from("<Q", valid, off_pos)
    out.append(BadFile("misaligned_offset", _put(valid, off_pos, "<Q", off + 1), "not a multiple of the alignment"))
    out.append(BadFile("offset_outside", _put(valid, off_pos, "<Q", off + (1 << 40)), "beyond the end"))
    last = lay.tensors[-1]
    (last_off,) = struct.unpack_from("<Q", valid, last[3])
    out.append(BadFile("last_tensor_past_end", _put(valid, last[3], "<Q", last_off + 64), "ends at byte"))
    out.append(BadFile("offset_out_of_order", _put(valid, off_pos, "<Q", off + 32), "does not follow"))
    # two tensor names of equal length: make the second one a copy of the first
    a, b = lay.tensors[2], lay.tensors[3]  # blk.0.attn_q.weight / blk.0.attn_k.weight
    a_name_pos = a[1] - 8 - len(a[0])
    b_name_pos = b[1] - 8 - len(b[0])
    assert len(a[0]) == len(b[0]), (a[0], b[0])
    dup = bytearray(valid)
    dup[b_name_pos : b_name_pos + len(b[0]) + 8] = valid[a_name_pos : a_name_pos + len(a[0]) + 8]
    out.append(BadFile("duplicate_tensor", bytes(dup), "appears twice"))
    newline = bytearray(valid)
    newline[b_name_pos + 8 + 3] = ord("\n")
    out.append(BadFile("tensor_name_newline", bytes(newline), "not printable"))
    # truncations: inside the header at many points, and inside the tensor data
    header_cuts = sorted({4, 7, 8, 12, 20, 24, 30, *(rng.randrange(24, lay.header_end) for _ in range(12))})
    for cut in header_cuts:
        out.append(BadFile(f"truncated_header_{cut}", valid[:cut], "truncated"))
    data_cuts = sorted({lay.header_end + 1, len(valid) - 1, *(rng.randrange(lay.header_end + 1, len(valid) - 64) for _ in range(8))})
    for cut in data_cuts:
        out.append(BadFile(f"truncated_data_{cut}", valid[:cut], "truncated"))
    return out


def repairable_files(tmp: Path) -> list[tuple[str, Path, str]]:
    """Files with metadata-only damage: (name, path, phrase the validate error must contain)."""
    out: list[tuple[str, Path, str]] = []

    p = write_valid_gguf(tmp / "broken_template.gguf", chat_template="{% for m in messages %}{{ m['content'] }")
    out.append(("broken_template", p, "chat template does not parse"))

    base = write_valid_gguf(tmp / "utf8_base.gguf", extra_strings={"general.description": "plain words here"})
    data = bytearray(base.read_bytes())
    i = data.index(b"plain words here")
    data[i + 2] = 0xFF
    p = tmp / "bad_utf8.gguf"
    p.write_bytes(bytes(data))
    out.append(("bad_utf8_value", p, "not valid UTF-8"))

    base = write_valid_gguf(tmp / "dup_base.gguf", extra_strings={"general.zzzz": "a second name"})
    data = bytearray(base.read_bytes())
    i = data.index(b"general.zzzz")
    data[i : i + 12] = b"general.name"
    p = tmp / "duplicate_key.gguf"
    p.write_bytes(bytes(data))
    out.append(("duplicate_key", p, "appears more than once"))

    base = write_valid_gguf(tmp / "key_base.gguf", extra_strings={"tara.note": "x"})
    data = bytearray(base.read_bytes())
    i = data.index(b"tara.note")
    data[i + 4] = ord("\n")
    p = tmp / "control_char_key.gguf"
    p.write_bytes(bytes(data))
    out.append(("control_char_key", p, "is not valid UTF-8 text"))

    base = write_valid_gguf(tmp / "align_base.gguf", alignment=64)
    lay = layout(base.read_bytes())
    kv = next(k for k in lay.kv_starts if k[0] == "general.alignment")
    p = tmp / "alignment_not_pow2.gguf"
    p.write_bytes(_put(base.read_bytes(), kv[2] + 4, "<I", 48))
    out.append(("alignment_not_pow2", p, "not a power of two"))

    base = write_valid_gguf(tmp / "align32_base.gguf", alignment=32)
    lay = layout(base.read_bytes())
    kv = next(k for k in lay.kv_starts if k[0] == "general.alignment")
    p = tmp / "alignment_wrong.gguf"
    p.write_bytes(_put(base.read_bytes(), kv[2] + 4, "<I", 64))
    out.append(("alignment_wrong", p, "laid out with alignment 32"))
    return out


def _kv_string(key: str, value: bytes) -> bytes:
    k = key.encode("utf-8")
    return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, len(value)) + value


def insert_kvs(data: bytes, entries: list[bytes], alignment: int = 32) -> bytes:
    """Append metadata entries after the existing ones, padding with a filler string entry so the header
    grows by a multiple of ``alignment`` and the tensor data stays aligned (the file stays loadable
    except for whatever the entries themselves break)."""
    lay = layout(data)
    extra = b"".join(entries)
    filler_base = len(_kv_string("tara.filler", b""))
    pad = -(len(extra) + filler_base) % alignment
    extra += _kv_string("tara.filler", b"f" * pad)
    (n_kv,) = struct.unpack_from("<Q", data, 16)
    at = lay.tensors[0][1] - 8 - len(lay.tensors[0][0]) if lay.tensors else lay.header_end
    out = bytearray(data[:at] + extra + data[at:])
    struct.pack_into("<Q", out, 16, n_kv + len(entries) + 1)
    return bytes(out)


def duplicate_key(data: bytes, key: str = "general.name") -> bytes:
    return insert_kvs(data, [_kv_string(key, b"a second, conflicting value")])


def bad_alignment(data: bytes, value: int = 48) -> bytes:
    k = b"general.alignment"
    return insert_kvs(data, [struct.pack("<Q", len(k)) + k + struct.pack("<II", 4, value)])


def broken_template(data: bytes) -> bytes:
    """Keep the length, break the Jinja syntax of the chat template."""
    b = bytearray(data)
    i = b.index(b"{% endfor %}")
    b[i : i + 12] = b"{% endfxr %}"
    return bytes(b)


def tokenizer_damage_files(tmp: Path) -> list[BadFile]:
    """Well-formed files whose tokenizer arrays disagree (llama.cpp would read past an array or abort)."""
    out = []
    p = write_valid_gguf(tmp / "short_types.gguf", token_types=[1] * (len(VOCAB) - 1))
    out.append(BadFile("short_token_types", p.read_bytes(), f"has {len(VOCAB) - 1} entries but there are {len(VOCAB)} tokens"))
    p = write_valid_gguf(tmp / "int_tokens.gguf", tokens=list(range(len(VOCAB))))
    out.append(BadFile("tokens_not_strings", p.read_bytes(), "not a list of strings"))
    return out


def _kv_u32(key: str, value: int) -> bytes:
    k = key.encode("utf-8")
    return struct.pack("<Q", len(k)) + k + struct.pack("<II", 4, value)


def abort_files(data: bytes) -> dict[str, tuple[bytes, str]]:
    """Damage llama.cpp does not fail on but aborts on (a crash of the whole process), built from the
    bytes of a llama model with a vocabulary: name -> (file bytes, phrase the error must contain)."""
    lay = layout(data)
    kv = {k[0]: k for k in lay.kv_starts}
    arch = "llama"
    out = {
        "block_count_0": (_put(data, kv[f"{arch}.block_count"][2] + 4, "<I", 0), "block_count is 0"),
        "block_count_513": (_put(data, kv[f"{arch}.block_count"][2] + 4, "<I", 513), "block_count is 513"),
        "experts_overused": (
            insert_kvs(data, [_kv_u32(f"{arch}.expert_count", 4), _kv_u32(f"{arch}.expert_used_count", 8)]),
            "expert_used_count is 8",
        ),
        "nan_epsilon": (
            _put(data, kv[f"{arch}.attention.layer_norm_rms_epsilon"][2] + 4, "<f", float("nan")),
            "layer_norm_rms_epsilon is nan",
        ),
        "rope_scaling_bogus": (
            insert_kvs(data, [_kv_string(f"{arch}.rope.scaling.type", b"bogus")]),
            "rope.scaling.type is 'bogus'",
        ),
    }
    # two tokens with the same text: rewrite the second token of some length as a copy of the first
    pos = kv["tokenizer.ggml.tokens"][2] + 4
    _sub, count = struct.unpack_from("<IQ", data, pos)
    pos += 12
    tokens: list[tuple[int, bytes]] = []  # (position of the text, text)
    for _ in range(count):
        (n,) = struct.unpack_from("<Q", data, pos)
        tokens.append((pos + 8, data[pos + 8 : pos + 8 + n]))
        pos += 8 + n
    first_of_len: dict[int, int] = {}
    for at, text in tokens:
        if text and len(text) in first_of_len:
            dup = bytearray(data)
            dup[at : at + len(text)] = data[first_of_len[len(text)] : first_of_len[len(text)] + len(text)]
            out["duplicate_token"] = (bytes(dup), "holds the same text twice")
            break
        first_of_len.setdefault(len(text), at)
    # a NUL inside a token: llama.cpp reads up to it, so "he" with a NUL after "h" becomes a second "h"
    texts = {text for _at, text in tokens}
    for at, text in tokens:
        if len(text) >= 2 and text[:1] in texts:
            nul = bytearray(data)
            nul[at + 1] = 0
            out["token_with_nul"] = (bytes(nul), "holds the same text twice")
            break
    return out
