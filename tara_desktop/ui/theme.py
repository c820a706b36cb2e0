"""Light and dark themes (Fusion + a palette + a little style sheet), following the system when asked."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class Colors:
    window: str
    base: str
    alt_base: str
    text: str
    muted: str
    accent: str
    accent_text: str
    user_bubble: str
    reply_bubble: str
    code_bg: str
    border: str
    sidebar: str
    danger: str


LIGHT = Colors(
    window="#f5f6f8", base="#ffffff", alt_base="#eef0f4", text="#1d2330", muted="#6b7385",
    accent="#3b6cf6", accent_text="#ffffff", user_bubble="#e4ecff", reply_bubble="#ffffff",
    code_bg="#f1f3f7", border="#d9dde5", sidebar="#eceef3", danger="#c62f3c",
)
DARK = Colors(
    window="#1e2027", base="#262932", alt_base="#2d313b", text="#e6e8ee", muted="#9aa2b4",
    accent="#6d8dff", accent_text="#0e1020", user_bubble="#2f3a5c", reply_bubble="#292c35",
    code_bg="#1a1c22", border="#3a3f4b", sidebar="#1a1c22", danger="#ff6b78",
)

_current = LIGHT


def current() -> Colors:
    """The colours in use now (for HTML that a style sheet cannot reach)."""
    return _current


def system_prefers_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return hints.colorScheme() == Qt.ColorScheme.Dark


def _palette(c: Colors) -> QPalette:
    p = QPalette()
    role = QPalette.ColorRole
    for r, value in (
        (role.Window, c.window), (role.WindowText, c.text), (role.Base, c.base),
        (role.AlternateBase, c.alt_base), (role.Text, c.text), (role.Button, c.alt_base),
        (role.ButtonText, c.text), (role.ToolTipBase, c.base), (role.ToolTipText, c.text),
        (role.Highlight, c.accent), (role.HighlightedText, c.accent_text), (role.Link, c.accent),
        (role.PlaceholderText, c.muted), (role.BrightText, c.danger),
    ):
        p.setColor(r, QColor(value))
    p.setColor(QPalette.ColorGroup.Disabled, role.Text, QColor(c.muted))
    p.setColor(QPalette.ColorGroup.Disabled, role.ButtonText, QColor(c.muted))
    p.setColor(QPalette.ColorGroup.Disabled, role.WindowText, QColor(c.muted))
    return p


def _style_sheet(c: Colors) -> str:
    return f"""
    QListWidget#NavBar {{ background: {c.sidebar}; border: none; padding: 8px 4px; outline: 0; }}
    QListWidget#NavBar::item {{ padding: 9px 12px; border-radius: 6px; margin: 1px 4px; }}
    QListWidget#NavBar::item:selected {{ background: {c.accent}; color: {c.accent_text}; }}
    QWidget#ConversationSidebar {{ background: {c.sidebar}; }}
    QListWidget#ConversationList {{ background: transparent; border: none; outline: 0; }}
    QListWidget#ConversationList::item {{ padding: 7px 8px; border-radius: 6px; }}
    QListWidget#ConversationList::item:selected {{ background: {c.alt_base}; color: {c.text};
        border-left: 3px solid {c.accent}; }}
    QFrame#UserBubble {{ background: {c.user_bubble}; border-radius: 12px; }}
    QFrame#ReplyBubble {{ background: {c.reply_bubble}; border: 1px solid {c.border}; border-radius: 12px; }}
    QFrame#UserBubble QTextBrowser, QFrame#ReplyBubble QTextBrowser {{ background: transparent; border: none; }}
    QLabel#BubbleMeta, QLabel#Muted {{ color: {c.muted}; }}
    QLabel#PageTitle {{ font-size: 15pt; font-weight: 600; }}
    QFrame#Composer {{ background: {c.base}; border: 1px solid {c.border}; border-radius: 12px; }}
    QFrame#Composer QPlainTextEdit {{ background: transparent; border: none; }}
    QPushButton#PrimaryButton {{ background: {c.accent}; color: {c.accent_text}; border: none;
        border-radius: 8px; padding: 6px 16px; font-weight: 600; }}
    QPushButton#PrimaryButton:disabled {{ background: {c.border}; color: {c.muted}; }}
    QPushButton#DangerButton {{ color: {c.danger}; }}
    QToolButton#BubbleAction {{ border: none; color: {c.muted}; padding: 2px 6px; }}
    QToolButton#BubbleAction:hover {{ color: {c.accent}; }}
    QFrame#Banner {{ border-radius: 8px; padding: 4px; }}
    QFrame#Banner[kind="error"] {{ background: {c.danger}; }}
    QFrame#Banner[kind="error"] QLabel {{ color: white; }}
    QFrame#Banner[kind="info"] {{ background: {c.alt_base}; }}
    QScrollArea#MessageScroll, QWidget#MessageColumn {{ background: {c.window}; border: none; }}
    """


def apply_theme(app: QApplication, theme: str = "system", font_size: int | None = None) -> Colors:
    """Apply ``theme`` ("system", "light" or "dark") and the base font size in points."""
    global _current
    dark = theme == "dark" or (theme == "system" and system_prefers_dark())
    colors = DARK if dark else LIGHT
    _current = colors
    app.setStyle("Fusion")
    app.setPalette(_palette(colors))
    app.setStyleSheet(_style_sheet(colors))
    if font_size:
        font = QFont(app.font())
        font.setPointSize(font_size)
        app.setFont(font)
    return colors
