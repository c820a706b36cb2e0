"""Benchmark of the encrypted profile store.

Prints the median time per encrypted ``append_message`` over 10,000 messages, the time to read a
1,000-message conversation, and both against the same schema and code path with the encryption replaced
by an identity transform, measured in the same run. Targets: append <= 2 ms median, ratio <= 3.

Run: .venv/bin/python benchmarks/bench_profile.py [--messages N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tara_desktop.profile import Profile  # noqa: E402
from tara_desktop.profile.crypto import IntegrityFailure, RecordKeys  # noqa: E402

APPEND_TARGET_MS = 2.0
RATIO_TARGET = 3.0
CONVERSATION = 1_000


class PlainKeys(RecordKeys):
    """The baseline: the same binding check, no encryption."""

    def seal(self, binding: str, payload: bytes) -> bytes:
        return binding.encode("ascii") + b"\n" + payload

    def open(self, binding: str, sealed: bytes) -> bytes:
        head, _, payload = bytes(sealed).partition(b"\n")
        if head != binding.encode("ascii"):
            raise IntegrityFailure("another record")
        return payload


def _text(i: int) -> str:
    words = ("the", "model", "answered", "quickly", "about", "lisbon", "trains", "and", "weather", "today")
    return " ".join(words[(i * 7 + k) % len(words)] for k in range(12 + i % 40))


def open_profile(directory: Path, *, encrypted: bool) -> Profile:
    profile = Profile.open(directory, passphrase="benchmark passphrase")
    if not encrypted:
        vault = profile._vault
        vault.keys = {g: PlainKeys(g, b"\0" * 32) for g in vault.keys}
    return profile


def run(work: Path, n: int) -> dict[str, tuple[list[float], list[float]]]:
    """Both stores side by side, operations interleaved, so both see the same machine load."""
    profiles = {"encrypted": open_profile(work / "encrypted", encrypted=True),
                "plain": open_profile(work / "plain", encrypted=False)}
    cids = {name: [p.store.create_conversation(f"conversation {c}") for c in range(max(1, n // CONVERSATION))]
            for name, p in profiles.items()}
    appends: dict[str, list[float]] = {name: [] for name in profiles}
    reads: dict[str, list[float]] = {name: [] for name in profiles}
    for i in range(n):
        text, meta = _text(i), {"domain": "general", "i": i}
        for name, p in profiles.items():
            cid = cids[name][i // CONVERSATION % len(cids[name])]
            t0 = time.perf_counter()
            p.store.append_message(cid, "user" if i % 2 else "assistant", text, meta)
            appends[name].append(time.perf_counter() - t0)
    for _ in range(9):
        for name, p in profiles.items():
            t0 = time.perf_counter()
            msgs = p.store.messages(cids[name][0])
            reads[name].append(time.perf_counter() - t0)
            assert len(msgs) == min(n, CONVERSATION)
    for p in profiles.values():
        p.close()
    return {name: (appends[name], reads[name]) for name in profiles}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=ROOT / ".tmp", help="where the temporary profiles go (a real disk)")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-profile-", dir=args.dir))
    os.environ.pop("TARA_KEY_SOURCE", None)
    try:
        results = run(work, args.messages)
        enc_append, enc_read = results["encrypted"]
        plain_append, plain_read = results["plain"]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def ms(values: list[float]) -> float:
        return statistics.median(values) * 1000

    def p95(values: list[float]) -> float:
        return sorted(values)[int(len(values) * 0.95)] * 1000

    ea, pa, er, pr = ms(enc_append), ms(plain_append), ms(enc_read), ms(plain_read)
    append_ratio, read_ratio = ea / pa, er / pr
    print(f"profile store benchmark: {args.messages} appends, read of a {CONVERSATION}-message conversation")
    print(f"{'':28s}{'encrypted':>12s}{'plain':>12s}{'ratio':>8s}")
    print(f"{'append, median (ms)':28s}{ea:12.3f}{pa:12.3f}{append_ratio:8.2f}")
    print(f"{'append, p95 (ms)':28s}{p95(enc_append):12.3f}{p95(plain_append):12.3f}")
    print(f"{'read 1,000 messages (ms)':28s}{er:12.1f}{pr:12.1f}{read_ratio:8.2f}")
    checks = [
        (f"append median {ea:.3f} ms <= {APPEND_TARGET_MS} ms", ea <= APPEND_TARGET_MS),
        (f"append ratio {append_ratio:.2f} <= {RATIO_TARGET}", append_ratio <= RATIO_TARGET),
        (f"read ratio {read_ratio:.2f} <= {RATIO_TARGET}", read_ratio <= RATIO_TARGET),
    ]
    for label, ok in checks:
        print(f"{'PASS' if ok else 'MISSED'}: {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
