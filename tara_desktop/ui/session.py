"""The session: opens the assistant (profile, configs, router, model pool) off the GUI thread.

It asks for the passphrase when the profile needs one, and then warms up the default model in the
background so the first reply does not pay for the load.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui.workers import Emit, JobHost, JobThread

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant

log = logging.getLogger(__name__)

WELCOME_KEY = "ui.welcome_done"


def _open_assistant(profile_dir: Path | None, passphrase: str | None) -> Assistant:
    from tara_desktop.assistant import Assistant

    # A passphrase here was typed by the person: if it creates the profile, a weak one is refused.
    return Assistant.open(profile_dir, passphrase=passphrase, check_new_passphrase=passphrase is not None)


def needs_passphrase(exc: BaseException | None) -> bool:
    """True when the profile could open with a (different) passphrase: it is locked, the passphrase was
    wrong, another TARA process changed it (:class:`PassphraseChanged` is a :class:`WrongPassphrase`), or
    the passphrase chosen for a new profile is too easy to guess (:class:`WeakPassphrase`)."""
    from tara_desktop.profile.errors import ProfileLocked, WeakPassphrase, WrongPassphrase

    return isinstance(exc, ProfileLocked | WrongPassphrase | WeakPassphrase)


class Session(QObject):
    """Holds the open assistant.

    Signals:
        status_changed(str): a short line for the status bar.
        opened(object): the Assistant is ready.
        failed(str): it could not be opened (one sentence).
        model_status(str): the default model's state (loading, ready, not found).
    """

    status_changed = Signal(str)
    opened = Signal(object)
    failed = Signal(str)
    model_status = Signal(str)

    def __init__(self, jobs: JobHost, profile_dir: Path | None, parent: QWidget) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.profile_dir = profile_dir
        self.assistant: Assistant | None = None
        self._window = parent
        self._job: JobThread | None = None
        self.passphrase_tries = 0

    def open(self, passphrase: str | None = None) -> None:
        if self._job is not None:
            return
        self.status_changed.emit("Opening your profile…")
        profile_dir = self.profile_dir

        def run(state: JobState, _emit: Emit) -> Assistant:
            state.report(None, "Opening your profile")
            return _open_assistant(profile_dir, passphrase)

        self._job = self.jobs.start(run, "open-profile")
        self._job.succeeded.connect(self._on_opened)
        self._job.failed.connect(self._on_failed)
        self._job.cancelled.connect(self._on_cancelled)

    def _on_cancelled(self) -> None:
        self._job = None

    def _on_opened(self, assistant: Assistant) -> None:
        self._job = None
        self.assistant = assistant
        self.status_changed.emit("Ready")
        self.opened.emit(assistant)
        if self.assistant is not None:  # (the window may have been closed meanwhile)
            self.warm_up()

    def _on_failed(self, message: str) -> None:
        exc = self._job.exception if self._job is not None else None
        self._job = None
        if needs_passphrase(exc) and self.passphrase_tries < 5:
            from tara_desktop.profile.errors import (
                NewProfileNeedsPassphrase,
                PassphraseChanged,
                ProfileLocked,
                WeakPassphrase,
            )
            from tara_desktop.ui.unlock_dialog import ask_passphrase

            self.passphrase_tries += 1
            first = self.passphrase_tries == 1 and isinstance(exc, ProfileLocked)
            if isinstance(exc, PassphraseChanged):
                message = "Your passphrase was changed in another TARA window or command; enter the new one."
            choosing = isinstance(exc, NewProfileNeedsPassphrase | WeakPassphrase)  # typed twice, then
            phrase = ask_passphrase(self._window, None if first else message, new_profile=choosing)
            if phrase is not None:
                self.open(phrase)
                return
        self.status_changed.emit("Profile not open")
        self.failed.emit(message)

    def warm_up(self) -> None:
        """Prepare the router and load the default model in the background, so the first reply does
        not wait for them; the status line says what is happening."""
        assistant = self.services()
        name = self.default_model_name()

        def run(state: JobState, _emit: Emit) -> str:
            state.report(None, "Preparing…")
            assistant.router.warm_up()
            state.check()
            try:
                path = assistant.model_for(name)
            except TaraError:
                return f"Model {name} not found — add one in Models"
            state.report(None, f"Loading {name}…")
            assistant.pool.get(path, state)
            return f"{name} ready"

        job = self.jobs.start(run, "warm-up")
        job.progress.connect(self._on_warm_up_progress)
        job.succeeded.connect(self._on_warmed_up)
        job.failed.connect(functools.partial(self._on_warm_up_failed, name))

    def _on_warm_up_progress(self, _fraction: float | None, message: str) -> None:
        self.model_status.emit(message)

    def _on_warmed_up(self, text: str) -> None:
        self.model_status.emit(str(text))

    def _on_warm_up_failed(self, name: str, message: str) -> None:
        self.model_status.emit(f"{name} did not load: {message}")

    def services(self) -> Assistant:
        """The open profile's services; TaraError before a profile is open."""
        if self.assistant is None:
            raise TaraError("no profile is open yet; unlock it first")
        return self.assistant

    def default_model_name(self) -> str:
        return str(self.services().configs.mapping.default.model)

    def welcome_done(self) -> bool:
        try:
            return bool(self.services().profile.store.get_setting(WELCOME_KEY, False))
        except Exception:
            return True

    def reopen(self) -> None:
        self.close()
        self.open()

    def close(self) -> None:
        assistant, self.assistant = self.assistant, None
        if assistant is None and self._job is not None and self._job.isFinished():
            from tara_desktop.assistant import Assistant  # (loaded: the job that opened it imported it)

            opened = self._job.result  # opened while the window was closing: close it too
            assistant = opened if isinstance(opened, Assistant) else None
            self._job = None
        if assistant is None:
            return
        try:
            assistant.close()
        except Exception:
            log.warning("closing the profile failed", exc_info=True)
