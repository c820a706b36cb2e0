"""The training child process: ``python -m tara_desktop.training.worker JOB_DIR [--resume]``.

Protocol with the supervising parent (:mod:`tara_desktop.training.supervisor`):

- stdin: an 8-byte big-endian length, then that many bytes of dataset (the data never touches the disk
  in plain text), then command lines: ``cancel`` stops the job within one step. End of stdin (the parent
  died) also stops the job, with a checkpoint, so it can be resumed later.
- stdout: one JSON event per line (see :mod:`tara_desktop.training.job`); nothing else is printed there.
- exit code: 0 done, 3 cancelled, 2 bad input (an ``error`` event says why), 1 an unexpected error.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 3


class _Stdin:
    """Reads fd 0 with ``os.read`` (no buffered-reader lock, so a thread blocked here never stalls the
    interpreter's shutdown) and hands out exact byte counts and then command lines."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = os.read(self.fd, 1 << 20)
        self.buffer += chunk
        return bool(chunk)

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise EOFError("the parent closed the pipe before sending the dataset")
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def lines(self) -> Iterator[bytes]:
        while True:
            while b"\n" not in self.buffer:
                try:
                    if not self._fill():
                        return
                except OSError:
                    return
            line, self.buffer = self.buffer.split(b"\n", 1)
            yield line


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    resume = "--resume" in argv
    args = [a for a in argv if not a.startswith("--")]  # (a bundled app passes --training-worker too)
    if len(args) != 1:
        sys.stderr.write("usage: python -m tara_desktop.training.worker JOB_DIR [--resume]\n")
        return EXIT_BAD_INPUT

    # Keep stdout for events only: anything a library prints goes to stderr.
    events_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False)
        with lock:
            try:
                events_out.write(line + "\n")
                events_out.flush()
            except (BrokenPipeError, ValueError):
                pass

    from tara_desktop.jobs import Cancelled, JobState

    # Ctrl-C in a terminal reaches this process too: stop cleanly, like a cancel from the parent.
    state = JobState()
    signal.signal(signal.SIGINT, lambda *_: state.cancel())
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, lambda *_: state.cancel())

    from tara_desktop.errors import TaraError
    from tara_desktop.training import job, recovery

    stdin = _Stdin(sys.stdin.fileno())
    try:
        size = int.from_bytes(stdin.read_exact(8), "big")
        data = stdin.read_exact(size)
    except EOFError as exc:
        emit({"type": "error", "message": str(exc)})
        return EXIT_BAD_INPUT

    def listen() -> None:
        for line in stdin.lines():
            if line.strip() == b"cancel":
                state.cancel()
        state.cancel()  # the parent went away: stop cleanly with a checkpoint

    threading.Thread(target=listen, name="training-commands", daemon=True).start()

    try:
        spec = recovery.read_job(args[0]).spec
        job.run(spec, state, data, on_event=emit, resume=resume)
        return EXIT_DONE
    except Cancelled:
        return EXIT_CANCELLED
    except TaraError as exc:
        emit({"type": "error", "message": str(exc)})
        return EXIT_BAD_INPUT
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        emit({"type": "error", "message": f"training failed: {exc.__class__.__name__}: {exc}"[:500]})
        return EXIT_FAILED
    finally:
        events_out.flush()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the command-listener thread may still be blocked reading stdin.
    os._exit(code)
