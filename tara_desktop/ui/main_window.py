"""The main window: a navigation bar (Chat, Models, Training, Privacy, Settings) and the pages.

The window shows at once; the profile and services open on a background job (the session) and the
pages get the assistant when it is ready. Pages other than Chat are built the first time they are shown,
so startup imports nothing heavy.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from tara_desktop.ui import main_thread_gc, theme
from tara_desktop.ui.chat_model import ChatModel
from tara_desktop.ui.chat_pane import ChatPane
from tara_desktop.ui.conversation_list import ConversationList
from tara_desktop.ui.session import Session
from tara_desktop.ui.workers import Emit, JobHost, JobThread

if TYPE_CHECKING:
    from typing import TypeAlias

    from tara_desktop.assistant import Assistant
    from tara_desktop.jobs import JobState
    from tara_desktop.profile import Profile
    from tara_desktop.ui.models_page import ModelsPage
    from tara_desktop.ui.privacy_page import PrivacyPage
    from tara_desktop.ui.settings_page import SettingsPage
    from tara_desktop.ui.training_tab import TrainingTab

    Page: TypeAlias = SettingsPage | ModelsPage | TrainingTab | PrivacyPage  # the pages built on first use

log = logging.getLogger(__name__)

PAGES = ("Chat", "Models", "Training", "Privacy", "Settings")


class _LazyPage(QWidget):
    """A placeholder that builds the real page the first time it is needed."""

    def __init__(self, factory: Callable[[], Page], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._factory = factory
        self.page: Page | None = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)

    def build(self) -> Page:
        if self.page is None:
            self.page = self._factory()
            self._layout.addWidget(self.page)
        return self.page


class MainWindow(QMainWindow):
    """TARA's window.

    Signals:
        assistant_ready(object): the services are open (the Assistant).
    """

    assistant_ready = Signal(object)

    def __init__(self, profile_dir: Path | None = None, *, show_welcome: bool = True,
                 keep_theme: bool = False) -> None:
        super().__init__()
        # Job threads (searches, conversation loads) share the interpreter with the event loop: hand it
        # over every 1 ms instead of Python's default 5 ms, so the window answers while they decrypt.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        main_thread_gc.hold()  # Qt objects freed by the cycle collector die on this thread, not on a job's
        self.setWindowTitle("TARA")
        self.setMinimumSize(QSize(760, 520))
        self.resize(1180, 760)
        self.jobs = JobHost(self)
        self.session = Session(self.jobs, profile_dir, self)
        self._show_welcome = show_welcome
        self._keep_theme = keep_theme  # screenshots and smoke runs choose their own
        self._closing = False
        central = QWidget(self)
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        self.nav = QListWidget(central)
        self.nav.setObjectName("NavBar")
        self.nav.setAccessibleName("Sections")
        self.nav.setFixedWidth(132)
        for name in PAGES:
            self.nav.addItem(name)
        row.addWidget(self.nav)
        self.stack = QStackedWidget(central)
        row.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        # Chat page: conversations | chat pane, two views of one chat model
        self.chat_model = ChatModel(self.jobs, self)
        self.conversations = ConversationList(self, model=self.chat_model)
        self.chat = ChatPane(self.jobs, parent=self, model=self.chat_model)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.conversations)
        splitter.addWidget(self.chat)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([240, 900])
        splitter.setChildrenCollapsible(False)
        self.stack.addWidget(splitter)
        self.pages: dict[str, _LazyPage] = {}
        for name in PAGES[1:]:
            lazy = _LazyPage(functools.partial(self._make_page, name), self.stack)
            self.pages[name] = lazy
            self.stack.addWidget(lazy)
        self.nav.currentRowChanged.connect(self._on_nav)
        self.nav.setCurrentRow(0)
        self.statusBar().addPermanentWidget(self._status_label())
        self._build_menus()

        self.conversations.conversation_selected.connect(self.chat.show_conversation)
        self.conversations.error.connect(self.chat.banner.show_error)
        self.session.status_changed.connect(self._on_session_status)
        self.session.opened.connect(self._on_opened)
        self.session.failed.connect(self._on_open_failed)
        self.session.model_status.connect(self.chat.set_status)

    # ---- pages ------------------------------------------------------------------------------------
    def _make_page(self, name: str) -> Page:
        page: Page
        if name == "Settings":
            from tara_desktop.ui.settings_page import SettingsPage

            page = SettingsPage(self)
            page.settings_saved.connect(self._on_settings_saved)
        elif name == "Models":
            from tara_desktop.ui.models_page import ModelsPage

            page = ModelsPage(self.jobs, self)
            page.voice_models.installed.connect(self._on_voice_model_installed)
        elif name == "Training":
            from tara_desktop.ui.training_tab import TrainingTab

            page = TrainingTab(self.jobs, self)
        else:
            from tara_desktop.ui.privacy_page import PrivacyPage

            page = PrivacyPage(self.jobs, self)
            page.everything_deleted.connect(self._on_everything_deleted)
        if self.session.assistant is not None:
            page.set_assistant(self.session.assistant)
        return page

    def _on_voice_model_installed(self, _model_id: str) -> None:
        self.chat.voice.reset_engines()  # the next spoken turn looks for its models again

    def _on_settings_saved(self, _overrides: dict[str, object]) -> None:
        self.chat.set_assistant(self.session.assistant)

    def page(self, name: str) -> ChatPane | Page:
        """The page called ``name``, built if needed (tests and menus use this)."""
        if name == "Chat":
            return self.chat
        return self.pages[name].build()

    def show_page(self, name: str) -> ChatPane | Page:
        self.nav.setCurrentRow(PAGES.index(name))
        return self.page(name)

    def models_page(self, *, show: bool = False) -> ModelsPage:
        """The Models page, built if needed (``show``: and switched to)."""
        from tara_desktop.ui.models_page import ModelsPage

        page = self.show_page("Models") if show else self.page("Models")
        assert isinstance(page, ModelsPage)
        return page

    def _on_nav(self, row: int) -> None:
        if row > 0:
            self.pages[PAGES[row]].build()
        self.stack.setCurrentIndex(row)

    def _status_label(self) -> QLabel:
        self.status_label = QLabel("Starting…", self)
        self.status_label.setAccessibleName("Status")
        return self.status_label

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&New chat", "Ctrl+N", self.conversations.new_conversation)
        self._action(file_menu, "&Add a model file…", "Ctrl+O", self._on_add_model_file)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        view = bar.addMenu("&View")
        for i, name in enumerate(PAGES):
            self._action(view, f"&{name}", f"Ctrl+{i + 1}", functools.partial(self._on_view_page, name))
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Welcome and setup…", None, self.show_welcome)
        self._action(help_menu, "&About TARA", None, self._about)

    def _action(self, menu: QMenu, text: str, shortcut: str | QKeySequence.StandardKey | None,
                slot: Callable[[], object]) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _on_add_model_file(self) -> None:
        self.models_page(show=True).add_model_dialog()

    def _on_view_page(self, name: str, _checked: bool = False) -> None:
        self.show_page(name)

    def _about(self) -> None:
        from tara_desktop import __version__

        QMessageBox.about(self, "About TARA", f"<b>TARA {__version__}</b><p>A local, private AI assistant. "
                          "Everything you say stays on this computer, encrypted.</p>")

    # ---- session ----------------------------------------------------------------------------------
    def open_session(self) -> None:
        self.session.open()

    def _on_session_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _on_opened(self, assistant: Assistant) -> None:
        look = assistant.configs.app.app
        app = QApplication.instance()
        if isinstance(app, QApplication) and not self._keep_theme:
            theme.apply_theme(app, look.theme, look.font_size)  # the user's own theme and font size
        self.chat.set_assistant(assistant)
        self.conversations.set_enabled(True)
        for lazy in self.pages.values():
            if lazy.page is not None:
                lazy.page.set_assistant(assistant)
        self.assistant_ready.emit(assistant)
        if self._show_welcome and not self.session.welcome_done():
            self.show_welcome()
        self._mention_interrupted_training(assistant)

    def _mention_interrupted_training(self, assistant: Assistant) -> None:
        """A training job that the app or the machine interrupted is offered again on the next start."""
        try:
            from tara_desktop.training import recovery

            jobs = recovery.find_interrupted_jobs(Path(assistant.profile_dir) / "training")
        except Exception:
            log.warning("could not look for interrupted training jobs", exc_info=True)
            return
        if jobs and self.stack.currentIndex() == 0 and self.chat.banner.isHidden():
            self.chat.banner.show_info(f"The {jobs[0].record.spec.domain} training job did not finish. "
                                       "Open Training (Ctrl+3) to resume it.")

    def _on_open_failed(self, message: str) -> None:
        self.chat.banner.show_error(message)

    def show_welcome(self) -> None:
        if self.session.assistant is None:
            self.chat.banner.show_info("The welcome opens once your profile is unlocked.")
            return
        from tara_desktop.ui.welcome import WelcomeWizard

        wizard = WelcomeWizard(self.session, self)
        wizard.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        wizard.open()

    def change_protection(self, profile: Profile, *, key_source: str, new_passphrase: str | None = None) -> JobThread:
        """Re-encrypt the profile under a new key (keyring or passphrase) off the GUI thread; the chat banner
        says how it went (the welcome that asked for it has closed by then)."""

        def run(state: JobState, _emit: Emit) -> int:
            return profile.rotate_key(state, key_source=key_source, new_passphrase=new_passphrase)

        job = self.jobs.start(run, "rotate-key")
        job.succeeded.connect(self._on_protection_changed)
        job.failed.connect(self.chat.banner.show_error)
        return job

    def _on_protection_changed(self, _generation: int) -> None:
        self.chat.banner.show_info("Your profile's protection was changed.")

    def _on_everything_deleted(self) -> None:
        self.conversations.set_enabled(False)
        self.chat.set_assistant(None)
        self.chat.show_conversation(None)
        self.session.reopen()

    # ---- closing ----------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop what runs (a reply, a download, a training job) and wait for it, then close the profile."""
        if not self._closing:
            self._closing = True
            self.chat.voice.shutdown()
            self.chat_model.shutdown()
            if self.jobs.busy:  # the window goes away at once; the work stops behind it
                self.hide()
                QApplication.processEvents()
            self.jobs.shutdown()
            self.chat.voice.close_engines()  # after the jobs: a turn still speaking has stopped
            for lazy in self.pages.values():
                if lazy.page is not None and hasattr(lazy.page, "shutdown"):
                    lazy.page.shutdown()
            self.session.close()
            main_thread_gc.release()
        event.accept()
