"""Settings: theme, font size, voice, memory budget, threads — stored encrypted in the profile.

The values are the user's overrides of ``configs/config.yaml`` (the same typed keys), kept under one
profile setting; they are validated with the config's own types before they are saved.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QKeySequenceEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from tara_desktop.errors import TaraError
from tara_desktop.ui import theme
from tara_desktop.ui.banner import page_heading
from tara_desktop.ui.server_panel import ServerPanel

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.profile import ProfileStore

log = logging.getLogger(__name__)



def _overrides_key() -> str:
    from tara_desktop.assistant import SETTINGS_KEY

    return SETTINGS_KEY


def read_overrides(store: ProfileStore | None) -> dict[str, dict[str, object]]:
    """The user's overrides of config.yaml, by section (a copy: changing it changes nothing stored)."""
    value = store.get_setting(_overrides_key(), {}) if store is not None else {}
    return copy.deepcopy(value) if isinstance(value, dict) else {}


def input_devices() -> list[tuple[str, int]]:
    """Microphones PortAudio sees (empty when there is none, or no PortAudio)."""
    try:
        from tara_desktop.voice.audio import input_devices as listed

        return [(str(d["name"]), int(d["index"])) for d in listed()]
    except Exception:
        return []


class SettingsPage(QWidget):
    """Signals:
        settings_saved(dict): the user's overrides after Apply.
    """

    settings_saved = Signal(dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.assistant: Assistant | None = None
        page = QHBoxLayout(self)
        page.setContentsMargins(0, 0, 0, 0)
        body = QWidget(self)
        body.setMaximumWidth(760)  # a readable form, not one stretched across a wide screen
        page.addWidget(body)
        page.addStretch(1)
        outer = QVBoxLayout(body)
        outer.setContentsMargins(24, 16, 24, 16)
        self.banner = page_heading(outer, "Settings", self)

        look = QGroupBox("Appearance", self)
        form = QFormLayout(look)
        self.theme_box = QComboBox(look)
        for label, value in (("Follow the system", "system"), ("Light", "light"), ("Dark", "dark")):
            self.theme_box.addItem(label, value)
        self.theme_box.setAccessibleName("Theme")
        form.addRow("Theme:", self.theme_box)
        self.font_size = QSpinBox(look)
        self.font_size.setRange(8, 24)
        self.font_size.setSuffix(" pt")
        self.font_size.setAccessibleName("Font size")
        form.addRow("Font size:", self.font_size)
        outer.addWidget(look)

        voice = QGroupBox("Voice", self)
        form = QFormLayout(voice)
        self.hotkey = QKeySequenceEdit(voice)
        self.hotkey.setAccessibleName("Push-to-talk key")
        self.hotkey.setMaximumSequenceLength(1)
        form.addRow("Push-to-talk key:", self.hotkey)
        self.device_box = QComboBox(voice)
        self.device_box.setAccessibleName("Microphone")
        form.addRow("Microphone:", self.device_box)
        self.speak = QCheckBox("Speak replies aloud", voice)
        self.speak.setAccessibleName("Speak replies aloud")
        form.addRow("", self.speak)
        outer.addWidget(voice)

        models = QGroupBox("Models", self)
        form = QFormLayout(models)
        self.memory = QSpinBox(models)
        self.memory.setRange(0, 262_144)  # 0 = automatic: half of this computer's memory
        self.memory.setSpecialValueText("Automatic (half of this computer's memory)")
        self.memory.setSingleStep(256)
        self.memory.setSuffix(" MB")
        self.memory.setAccessibleName("Memory budget for loaded models")
        form.addRow("Memory budget:", self.memory)
        self.threads = QSpinBox(models)
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("Automatic (all cores)")
        self.threads.setAccessibleName("Threads")
        form.addRow("Threads:", self.threads)
        outer.addWidget(models)
        self.server_panel = ServerPanel(self)  # applies at once: not part of the Apply form
        outer.addWidget(self.server_panel)

        row = QHBoxLayout()
        row.addStretch(1)
        self.apply_button = QPushButton("Apply", self)
        self.apply_button.setObjectName("PrimaryButton")
        self.apply_button.setAccessibleName("Apply settings")
        row.addWidget(self.apply_button)
        outer.addLayout(row)
        outer.addStretch(1)
        self.apply_button.clicked.connect(self.apply)
        self.set_assistant(None)

    def set_assistant(self, assistant: Assistant | None) -> None:
        self.assistant = assistant
        self.setEnabled(assistant is not None)
        self.server_panel.set_assistant(assistant)
        if assistant is None:
            return
        app = assistant.configs.app
        self.theme_box.setCurrentIndex(max(0, self.theme_box.findData(app.app.theme)))
        self.font_size.setValue(app.app.font_size)
        self.hotkey.setKeySequence(QKeySequence(app.voice.push_to_talk))
        self.speak.setChecked(app.voice.speak_replies)
        self.memory.setValue(app.llm.memory_budget_mb)
        self.threads.setValue(app.llm.threads)
        self.device_box.clear()
        self.device_box.addItem("System default", None)
        devices = input_devices()
        for name, index in devices:
            self.device_box.addItem(name, index)
        if not devices:
            self.device_box.setItemText(0, "System default (no microphone found)")
        wanted = app.voice.input_device
        found = self.device_box.findData(wanted) if wanted is not None else 0
        self.device_box.setCurrentIndex(max(0, found))

    def values(self) -> dict[str, dict[str, object]]:
        """The form as config overrides (the same sections and keys as config.yaml)."""
        key = self.hotkey.keySequence().toString() or "Ctrl+Space"
        return {
            "app": {"theme": self.theme_box.currentData(), "font_size": self.font_size.value()},
            "voice": {"push_to_talk": key, "input_device": self.device_box.currentData(),
                      "speak_replies": self.speak.isChecked()},
            "llm": {"memory_budget_mb": self.memory.value(), "threads": self.threads.value()},
        }

    def apply(self) -> None:
        if self.assistant is None:
            return
        overrides = read_overrides(self.assistant.profile.store)
        for section, fields in self.values().items():
            overrides.setdefault(section, {}).update(fields)
        try:
            self.assistant.save_settings(overrides)  # validated against config.py's types, then applied
        except TaraError as exc:
            self.banner.show_error(str(exc))
            return
        new_app = self.assistant.configs.app
        app = QApplication.instance()
        if isinstance(app, QApplication):
            theme.apply_theme(app, new_app.app.theme, new_app.app.font_size)
        self.banner.show_info("Saved. Memory budget and threads apply to the next model that loads.")
        self.settings_saved.emit(overrides)
