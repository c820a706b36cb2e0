"""Push-to-talk controls: the hold-to-talk button, the level meter and the voice state indicator."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QKeyEvent, QKeySequence, QPainter, QPaintEvent, QPen, QPixmap
from PySide6.QtWidgets import QLabel, QPushButton, QSizePolicy, QWidget

from tara_desktop.ui import theme

STATES = ("idle", "listening", "transcribing", "thinking", "speaking")
_STATE_TEXT = {
    "idle": "Idle",
    "listening": "Listening…",
    "transcribing": "Transcribing…",
    "thinking": "Thinking…",
    "speaking": "Speaking…",
}
_STATE_COLOR = {
    "idle": "#8a93a6",
    "listening": "#e0464e",
    "transcribing": "#e09a2d",
    "thinking": "#3b6cf6",
    "speaking": "#2fa66a",
}


def microphone_icon(color: QColor, size: int = 16) -> QIcon:
    """A small microphone drawn with QPainter (crisp at any scale; no icon font needed)."""
    icon = QIcon()
    for scale in (1, 2, 3):
        pm = QPixmap(size * scale, size * scale)
        pm.setDevicePixelRatio(scale)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(color, 1.6)
        p.setPen(pen)
        p.setBrush(color)
        p.drawRoundedRect(QRectF(size * 0.34, size * 0.06, size * 0.32, size * 0.52), size * 0.16, size * 0.16)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawArc(QRectF(size * 0.2, size * 0.22, size * 0.6, size * 0.52), 200 * 16, 140 * 16)
        p.drawLine(QPointF(size * 0.5, size * 0.74), QPointF(size * 0.5, size * 0.92))
        p.drawLine(QPointF(size * 0.34, size * 0.92), QPointF(size * 0.66, size * 0.92))
        p.end()
        icon.addPixmap(pm)
    return icon


class PushToTalkButton(QPushButton):
    """Hold to talk; release to send.

    Signals:
        press_started(): the button (or the hotkey) went down.
        press_ended(): it came up again.
    """

    press_started = Signal()
    press_ended = Signal()

    def __init__(self, hotkey: str = "Ctrl+Space", parent: QWidget | None = None) -> None:
        super().__init__("Hold to talk", parent)
        self.setIcon(microphone_icon(self.palette().buttonText().color()))
        self.setAccessibleName("Push to talk")
        self.setToolTip(f"Hold to talk ({hotkey}); release to send")
        self.setCheckable(False)
        self.held = False
        self.pressed.connect(self._down)
        self.released.connect(self._up)

    def _down(self) -> None:
        if not self.held:
            self.held = True
            self.press_started.emit()

    def _up(self) -> None:
        if self.held:
            self.held = False
            self.press_ended.emit()


class PushToTalkHotkey(QObject):
    """Watches the application's key events for the push-to-talk combination (hold, not repeat)."""

    def __init__(self, button: PushToTalkButton, hotkey: str = "Ctrl+Space") -> None:
        super().__init__(button)
        self._button = button
        self.set_hotkey(hotkey)

    def set_hotkey(self, hotkey: str) -> None:
        seq = QKeySequence(hotkey)
        if not seq.count():
            seq = QKeySequence("Ctrl+Space")
        combo = seq[0]  # type: ignore[index]
        self._key = combo.key()
        self._mods = combo.keyboardModifiers()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and isinstance(event, QKeyEvent):
            if event.key() != self._key or not self._button.isEnabled() or not self._button.window().isActiveWindow():
                return False
            if event.isAutoRepeat():
                return True
            if kind == QEvent.Type.KeyPress and (event.modifiers() & self._mods) == self._mods:
                self._button._down()
                return True
            if kind == QEvent.Type.KeyRelease and self._button.held:
                self._button._up()
                return True
        return False


class LevelMeter(QWidget):
    """A thin bar showing the microphone level (0..1)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.level = 0.0
        self.setAccessibleName("Microphone level")
        self.setMinimumSize(90, 8)
        self.setMaximumHeight(10)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.setFixedWidth(110)

    def set_level(self, level: float) -> None:
        self.level = min(1.0, max(0.0, float(level)))
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:
        c = theme.current()
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(c.border))
        p.drawRoundedRect(r, 4, 4)
        if self.level > 0:
            filled = QRectF(r.x(), r.y(), r.width() * self.level, r.height())
            p.setBrush(QColor("#e0464e" if self.level > 0.85 else "#2fa66a"))
            p.drawRoundedRect(filled, 4, 4)
        p.end()


class VoiceStateIndicator(QLabel):
    """A coloured dot and a word: idle, listening, transcribing, thinking, speaking."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Voice state")
        self.state = "idle"
        self.set_state("idle")

    def set_state(self, state: str) -> None:
        if state not in STATES:
            state = "idle"
        self.state = state
        color = _STATE_COLOR[state]
        self.setText(f"<span style='color:{color}'>●</span> {_STATE_TEXT[state]}")
        self.setAccessibleDescription(_STATE_TEXT[state])
