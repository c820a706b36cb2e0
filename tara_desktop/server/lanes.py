"""Fair, bounded queues: one generation per loaded model at a time, the others wait their turn.

Each model file (and each other single-user resource, such as the speech recogniser) has a *lane*.
A request reserves a place in its lane before anything is sent to the client, so a full lane is a
clean 429 and a full server a clean 503; then it waits, first come first served, until the lane is
free. A waiting request whose client went away (its job state cancelled) leaves the queue at once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

from tara_desktop.jobs import JobState
from tara_desktop.server.errors import busy, overloaded


@dataclass
class _Lane:
    waiting: deque[Ticket] = field(default_factory=deque)
    running: Ticket | None = None


class Ticket:
    """A place in one lane. :meth:`wait` until it is this request's turn, :meth:`release` when done."""

    def __init__(self, lanes: Lanes, key: Hashable) -> None:
        self._lanes = lanes
        self.key = key
        self.state = "waiting"  # waiting | running | done

    def wait(self, job: JobState) -> bool:
        """Block until this ticket runs (True) or ``job`` is cancelled while waiting (False)."""
        return self._lanes._wait(self, job)

    def release(self) -> None:
        self._lanes._release(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Lanes:
    """Lanes by key. ``max_waiting``: requests that may wait behind the running one in each lane (more is a
    429); ``max_total``: requests held by the whole server, running or waiting (more is a 503)."""

    def __init__(self, max_waiting: int = 8, max_total: int = 32) -> None:
        self.max_waiting = max_waiting
        self.max_total = max_total
        self._cond = threading.Condition()
        self._lanes: dict[Hashable, _Lane] = {}
        self._held = 0

    def reserve(self, key: Hashable, what: str = "the model") -> Ticket:
        """A place in ``key``'s lane, or :class:`ApiError` 429 (lane full) / 503 (server full)."""
        with self._cond:
            lane = self._lanes.setdefault(key, _Lane())
            if self._held >= self.max_total:
                raise overloaded()
            if lane.running is not None and len(lane.waiting) >= self.max_waiting:
                raise busy(what)
            ticket = Ticket(self, key)
            lane.waiting.append(ticket)
            self._held += 1
            return ticket

    def _wait(self, ticket: Ticket, job: JobState) -> bool:
        with self._cond:
            lane = self._lanes[ticket.key]
            while not (lane.running is None and lane.waiting and lane.waiting[0] is ticket):
                if job.cancelled:
                    self._drop(ticket)
                    return False
                self._cond.wait(0.05)
            lane.waiting.popleft()
            lane.running = ticket
            ticket.state = "running"
            return True

    def _drop(self, ticket: Ticket) -> None:
        lane = self._lanes.get(ticket.key)
        if ticket.state == "done" or lane is None:
            return
        if lane.running is ticket:
            lane.running = None
        else:
            try:
                lane.waiting.remove(ticket)
            except ValueError:
                pass
        ticket.state = "done"
        self._held -= 1
        if lane.running is None and not lane.waiting:
            del self._lanes[ticket.key]
        self._cond.notify_all()

    def _release(self, ticket: Ticket) -> None:
        with self._cond:
            self._drop(ticket)

    def snapshot(self) -> dict[str, int]:
        """How many requests run and wait right now (for the status line; no content)."""
        with self._cond:
            running = sum(1 for lane in self._lanes.values() if lane.running is not None)
            return {"running": running, "waiting": self._held - running}
