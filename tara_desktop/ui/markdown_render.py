"""Markdown to the HTML subset QTextBrowser understands, with code blocks and no raw HTML from messages."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from tara_desktop.ui import theme

if TYPE_CHECKING:
    from markdown import Markdown

_md: Markdown | None = None


def _converter() -> Markdown:
    global _md
    if _md is None:
        import markdown

        md = markdown.Markdown(extensions=["fenced_code", "tables", "sane_lists"])
        # Text typed by a person or produced by a model is never trusted as HTML: it is shown as text.
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        _md = md
    return _md


def to_html(text: str) -> str:
    """Render ``text`` (markdown) as HTML styled for the current theme."""
    c = theme.current()
    md = _converter()
    md.reset()
    try:
        body = md.convert(text)
    except Exception:  # markdown should not fail, but a message must always show
        body = f"<p>{html.escape(text)}</p>"
    style = (
        f"pre {{ background: {c.code_bg}; padding: 8px; font-family: monospace; }}"
        f" code {{ background: {c.code_bg}; font-family: monospace; }}"
        f" table {{ border-collapse: collapse; }} th, td {{ border: 1px solid {c.border}; padding: 3px 6px; }}"
        f" a {{ color: {c.accent}; }}"
    )
    return f"<html><head><style>{style}</style></head><body>{body}</body></html>"


def plain_to_html(text: str) -> str:
    """Text shown as is (the user's own words while streaming is not needed there)."""
    return "<p>" + html.escape(text).replace("\n", "<br>") + "</p>"
