"""The conversation list: new, rename, delete, and search across every conversation.

A view of the :class:`~tara_desktop.ui.chat_model.ChatModel`: it lists what the model's ``list_changed``
gives (the search runs off the GUI thread in the model) and selects the conversation the model shows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from tara_desktop.conversation import ConversationSummary
    from tara_desktop.ui.chat_model import ChatModel

log = logging.getLogger(__name__)

ID_ROLE = Qt.ItemDataRole.UserRole


class ConversationList(QWidget):
    """Lists the conversations the chat model has (all of them, or the search results).

    Signals:
        conversation_selected(object): a conversation id, or None for a new, empty chat.
        error(str): something the user should see.
    """

    conversation_selected = Signal(object)
    error = Signal(str)

    def __init__(self, parent: QWidget | None = None, model: ChatModel | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ConversationSidebar")
        self.model: ChatModel | None = None
        self._wanted: int | None = None  # a conversation to select when the list arrives
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 12, 10, 10)
        self.new_button = QPushButton("+  New chat", self)
        self.new_button.setObjectName("PrimaryButton")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        layout.addWidget(self.new_button)
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search all conversations")
        self.search.setAccessibleName("Search conversations")
        self.search.setClearButtonEnabled(True)
        layout.addWidget(self.search)
        self.list = QListWidget(self)
        self.list.setObjectName("ConversationList")
        self.list.setAccessibleName("Conversations")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setUniformItemSizes(True)
        layout.addWidget(self.list, 1)
        self.hint = QLabel("", self)
        self.hint.setObjectName("Muted")
        self.hint.setWordWrap(True)
        layout.addWidget(self.hint)
        row = QHBoxLayout()
        self.rename_button = QToolButton(self)
        self.rename_button.setText("Rename")
        self.rename_button.setAccessibleName("Rename conversation")
        self.delete_button = QToolButton(self)
        self.delete_button.setText("Delete")
        self.delete_button.setAccessibleName("Delete conversation")
        row.addWidget(self.rename_button)
        row.addWidget(self.delete_button)
        row.addStretch(1)
        layout.addLayout(row)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(200)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(self._on_search_edited)
        self.new_button.clicked.connect(self.new_conversation)
        self.rename_button.clicked.connect(self.rename_current)
        self.delete_button.clicked.connect(self.delete_current)
        self.list.currentRowChanged.connect(self._on_current_row_changed)
        self._quiet = False
        for key, slot in ((Qt.Key.Key_F2, self.rename_current), (Qt.Key.Key_Delete, self.delete_current)):
            shortcut = QShortcut(QKeySequence(key), self.list)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(slot)
        self.rename_button.setToolTip("Rename the conversation (F2)")
        self.delete_button.setToolTip("Delete the conversation (Delete)")
        if model is not None:
            self.set_model(model)
        self.set_enabled(False)

    def set_model(self, model: ChatModel) -> None:
        """Show ``model``'s list and follow the conversation it shows."""
        self.model = model
        model.list_changed.connect(self._on_list_changed)
        model.conversation_shown.connect(self._on_conversation_shown)
        model.conversation_created.connect(self._select_quietly)
        model.error.connect(self.error)

    def _on_search_edited(self, _text: str) -> None:
        self._search_timer.start()  # searched when the typing pauses

    def _on_conversation_shown(self, model: ChatModel) -> None:
        self._select_quietly(model.conversation_id)

    def set_enabled(self, enabled: bool) -> None:
        """Enable the controls once the profile is open."""
        for w in (self.new_button, self.search, self.rename_button, self.delete_button):
            w.setEnabled(enabled)
        if not enabled:
            self.list.clear()
            self.hint.setText("Opening your profile…")

    def current_id(self) -> int | None:
        row = self.list.currentRow()
        return None if row < 0 else self._row_id(row)

    def _row_id(self, row: int) -> int | None:
        value = self.list.model().index(row, 0).data(ID_ROLE)
        return None if value is None else int(value)

    def refresh(self, select: int | None = None) -> None:
        """Ask the model for the list (or the search results for the text in the search box); the list
        redraws when they arrive."""
        if self.model is None:
            return
        if select is not None:
            self._wanted = select
        self.model.search(self.search.text())

    def _on_list_changed(self, conversations: list[ConversationSummary]) -> None:
        keep = self._wanted or (self.model.conversation_id if self.model is not None else None)
        self._wanted = None
        self._quiet = True
        # Rows are made by Qt from strings and addressed by index: no Python wrapper of a QListWidgetItem
        # ever exists on this path. Python-made items, deleted by clear() when the list was rebuilt on a
        # new conversation, crashed PySide 6.11 (a segfault in Shiboken's releaseWrapper within a few
        # dozen new conversations; tests/ui/test_soak.py found it). No row signals while it is rebuilt.
        blocked = self.list.blockSignals(True)
        try:
            self.list.clear()
            query = self.model.query if self.model is not None else ""
            model = self.list.model()
            for row, conv in enumerate(conversations):
                title = conv.title or "Untitled"
                self.list.addItem(title)
                index = model.index(row, 0)
                model.setData(index, conv.id, ID_ROLE)
                model.setData(index, title, Qt.ItemDataRole.ToolTipRole)
                if conv.id == keep:
                    self.list.setCurrentRow(row)
            if query:
                self.hint.setText(f"{len(conversations)} conversation(s) mention “{query}”.")
            else:
                self.hint.setText("" if conversations else "No conversations yet.")
        finally:
            self.list.blockSignals(blocked)
            self._quiet = False

    def _select_quietly(self, conversation_id: object) -> None:
        self._quiet = True
        try:
            if conversation_id is None:
                self.list.setCurrentRow(-1)
                self.list.clearSelection()
                return
            for row in range(self.list.count()):
                if self._row_id(row) == conversation_id:
                    self.list.setCurrentRow(row)
                    return
        finally:
            self._quiet = False

    def _on_current_row_changed(self, row: int) -> None:
        if not self._quiet and row >= 0:
            self.conversation_selected.emit(self._row_id(row))

    def select(self, conversation_id: int | None) -> None:
        """Select a conversation (and emit) — None clears the selection for a new chat."""
        self._select_quietly(conversation_id)
        self.conversation_selected.emit(conversation_id)

    def new_conversation(self) -> None:
        self.select(None)

    def rename_current(self) -> None:
        cid = self.current_id()
        if cid is None or self.model is None:
            return
        old = str(self.list.model().index(self.list.currentRow(), 0).data() or "")
        title, ok = QInputDialog.getText(self, "Rename conversation", "New name:", text=old)
        if ok and title.strip():
            self.model.rename(cid, title.strip())

    def delete_current(self) -> None:
        cid = self.current_id()
        if cid is None or self.model is None:
            return
        name = str(self.list.model().index(self.list.currentRow(), 0).data() or "")
        answer = QMessageBox.question(
            self, "Delete conversation",
            f"Delete “{name}” and all its messages? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.model.delete(cid)
