"""Inspect and validate GGUF model files without trusting them.

A GGUF file is a header (magic, version, counts), metadata key/value pairs, tensor descriptions,
then the aligned tensor data. This module reads the header with its own bounded, streaming parser
(``gguf.GGUFReader`` memory-maps the file and trusts the counts it finds), so a truncated, bit-flipped or
hostile file gives one clear :class:`InvalidGguf` line and never a crash, a huge allocation or a hang:
every count and length is checked against the bytes actually left in the file before anything is read,
and every loop is bounded by the file size.

The checks mirror what llama.cpp's loader demands (``gguf.cpp``), so a file that passes here loads there:
version 2 or 3, little-endian, no duplicate keys or tensor names, no nested arrays, ``general.alignment``
a power of two stored as uint32, tensor names shorter than 64 bytes, 1..4 positive dimensions, a known
tensor type whose block size divides the row, tensors laid out in order at aligned offsets, and all of the
data inside the file.

Damage confined to metadata (a string that is not UTF-8, a chat template that does not parse, a duplicate
key, a wrong ``general.alignment``) is recorded in :attr:`GgufInfo.problems` by :func:`inspect`, and raised by
:func:`validate`; :mod:`tara_desktop.llm.gguf_repair` can write a fixed copy of such a file.

The parts: :mod:`~tara_desktop.llm.gguf_reader` (bounded reads of the bytes), :mod:`~tara_desktop.llm.gguf_header`
(the header's structure), :mod:`~tara_desktop.llm.gguf_checks` (what llama.cpp would abort on),
:mod:`~tara_desktop.llm.gguf_info` (:class:`GgufInfo`, what the file holds). This module is the way in:
:func:`inspect`, :func:`validate`, :func:`sha256_file`. Whether a valid GGUF is a chat model TARA can answer
with is :mod:`tara_desktop.llm.model_check`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tara_desktop.llm.gguf_header import open_gguf, parse
from tara_desktop.llm.gguf_info import GgufInfo
from tara_desktop.llm.gguf_reader import REDOWNLOAD, Cut, InvalidGguf

if TYPE_CHECKING:
    from tara_desktop.jobs import JobState

_HASH_CHUNK = 4 << 20


def inspect(path: str | os.PathLike[str]) -> GgufInfo:
    """Parse the header of a GGUF file. Raises :class:`InvalidGguf` for structural damage; damage limited
    to metadata is listed in ``problems`` instead (see :func:`validate`)."""
    p = Path(path)
    f, size = open_gguf(p)
    try:
        return parse(p, f, size)
    except Cut as cut:
        raise InvalidGguf(
            f"the file ends at byte {size} in the middle of the header (while reading {cut.what}): "
            f"the file is truncated, {REDOWNLOAD}"
        ) from None
    except InvalidGguf:
        raise
    except (struct.error, ValueError, OverflowError, MemoryError) as exc:  # defensive: never a traceback
        raise InvalidGguf(
            f"the GGUF header cannot be read ({type(exc).__name__}): the file is corrupt, {REDOWNLOAD}"
        ) from None
    except OSError as exc:
        raise InvalidGguf(f"{p} cannot be read ({exc.strerror or exc}): check the disk and the file") from None
    finally:
        f.close()


def sha256_file(path: str | os.PathLike[str], *, state: JobState | None = None) -> str:
    """Stream a file through sha256 (``state``: an optional JobState for progress and cancel)."""
    h = hashlib.sha256()
    p = Path(path)
    total = max(1, p.stat().st_size)
    done = 0
    with open(p, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
            done += len(chunk)
            if state is not None:
                state.check()
                state.report(done / total, "checking the file's sha256")
    return h.hexdigest()


def validate(
    path: str | os.PathLike[str], *, expected_sha256: str | None = None, state: JobState | None = None
) -> GgufInfo:
    """Check that a GGUF file will load: everything :func:`inspect` checks, no metadata damage, and the
    sha256 when ``expected_sha256`` is given. Raises :class:`InvalidGguf` with one line naming the
    problem and the fix."""
    info = inspect(path)
    if info.problems:
        first = info.problems[0]
        more = f" (and {len(info.problems) - 1} more metadata problems)" if len(info.problems) > 1 else ""
        raise InvalidGguf(
            f"{first.message}{more}: the tensor data looks intact, so `tara gguf repair {info.path} FIXED.gguf` "
            "can write a fixed copy"
        )
    if expected_sha256:
        try:
            digest = sha256_file(info.path, state=state)
        except OSError as exc:
            raise InvalidGguf(f"{info.path} cannot be read ({exc.strerror or exc}): check the disk and the file") from None
        if digest.lower() != expected_sha256.strip().lower():
            raise InvalidGguf(
                f"the file's sha256 is {digest} but {expected_sha256.strip().lower()} was expected: "
                "the file is damaged or a different version, download it again"
            )
        info = replace(info, sha256=digest)
    return info


__all__ = ["inspect", "sha256_file", "validate"]
