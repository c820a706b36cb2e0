"""Fuzz the validator with mutated headers: it may only ever return a GgufInfo or raise InvalidGguf."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tara_desktop.llm import gguf_file
from tara_desktop.llm.gguf_info import GgufInfo
from tara_desktop.llm.gguf_reader import InvalidGguf

from .gguf_corpus import layout, write_valid_gguf

_VALID: dict[str, bytes] = {}


def _valid_bytes() -> bytes:
    if "data" not in _VALID:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            _VALID["data"] = write_valid_gguf(Path(d) / "v.gguf").read_bytes()
    return _VALID["data"]


EXTREMES = [0, 1, 2, 3, 31, 32, 33, 63, 64, 255, 256, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(_valid_bytes())
    header_end = layout(bytes(data)).header_end
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["byte", "u32", "u64", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, min(len(data), header_end + 64) - 1)))
        if kind == "byte" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "u32" and pos + 4 <= len(data):
            struct.pack_into("<I", data, pos, draw(st.sampled_from(EXTREMES)) % 2**32)
        elif kind == "u64" and pos + 8 <= len(data):
            struct.pack_into("<Q", data, pos, draw(st.sampled_from(EXTREMES)))
        elif kind == "cut":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


def _check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        result = gguf_file.validate(path)
    except InvalidGguf as exc:
        message = str(exc)
        assert message and "\n" not in message
    else:
        assert isinstance(result, GgufInfo)
        assert all(t.offset + t.n_bytes <= len(data) for t in result.tensors)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
@pytest.mark.timeout(300)
def test_mutated_headers_give_info_or_invalid_gguf(tmp_path: Path, data: bytes) -> None:
    _check(tmp_path / "m.gguf", data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    version=st.sampled_from([2, 3]),
    n_tensors=st.sampled_from(EXTREMES),
    n_kv=st.sampled_from(EXTREMES),
    body=st.binary(max_size=512),
)
@pytest.mark.timeout(300)
def test_random_bodies_after_a_plausible_header(
    tmp_path: Path, version: int, n_tensors: int, n_kv: int, body: bytes
) -> None:
    _check(tmp_path / "r.gguf", b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + body)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
@pytest.mark.timeout(300)
def test_repair_of_mutated_files_gives_a_valid_copy_or_a_clear_error(tmp_path: Path, data: bytes) -> None:
    from tara_desktop.errors import TaraError
    from tara_desktop.llm.gguf_repair import repair

    src = tmp_path / "m.gguf"
    out = tmp_path / "out" / "fixed.gguf"
    out.parent.mkdir(exist_ok=True)
    for leftover in out.parent.iterdir():
        leftover.unlink()
    src.write_bytes(data)
    try:
        repair(src, out)
    except TaraError as exc:
        assert "\n" not in str(exc)
        assert list(out.parent.iterdir()) == []
    else:
        assert gguf_file.validate(out).problems == ()
    assert src.read_bytes() == data  # the original is never touched
