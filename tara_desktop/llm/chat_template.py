"""Turning a conversation into the prompt text a model expects: its own chat template from the GGUF
metadata (rendered with the same Jinja2 formatter llama-cpp-python uses), or ChatML when it has none.

Many templates refuse a system message or two messages of one role in a row; for those the conversation is
folded (system text into the first user message, neighbours of one role joined) and tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tara_desktop.errors import TaraError

if TYPE_CHECKING:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

log = logging.getLogger(__name__)

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML: used when a model carries no ``tokenizer.chat_template`` (the one copy in TARA)."""


class ChatTemplate:
    """A model's chat template, ready to format conversations.

    ``template`` is the model's ``tokenizer.chat_template`` (None or empty: ChatML). A template this Jinja
    cannot parse falls back to ChatML rather than failing the model; :attr:`has_chat_template` says whether
    the model's own template is used."""

    def __init__(self, template: str | None, *, eos_token: str, bos_token: str, model_name: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.model_name = model_name
        self.has_chat_template = bool(template)
        self.text: str = template or DEFAULT_CHAT_TEMPLATE
        try:
            self._with_prompt: Jinja2ChatFormatter = Jinja2ChatFormatter(
                template=self.text, eos_token=eos_token, bos_token=bos_token
            )
        except Exception:  # a template this Jinja cannot parse: fall back to ChatML rather than fail the model
            log.warning("model %s has a chat template that cannot be parsed; using ChatML", model_name)
            self.has_chat_template = False
            self.text = DEFAULT_CHAT_TEMPLATE
            self._with_prompt = Jinja2ChatFormatter(template=self.text, eos_token=eos_token, bos_token=bos_token)
        self._without_prompt: Jinja2ChatFormatter = Jinja2ChatFormatter(
            template=self.text, eos_token=eos_token, bos_token=bos_token, add_generation_prompt=False
        )

    def format(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages``; the folded conversation when the template refuses the first
        form. Raises TaraError naming the model when it refuses both."""
        formatter = self._with_prompt if add_generation_prompt else self._without_prompt
        first_error: Exception | None = None
        for attempt in (list(messages), fold_for_strict_templates(messages)):
            try:
                return formatter(messages=attempt).prompt  # type: ignore[arg-type]
            except Exception as exc:
                first_error = first_error or exc
        raise TaraError(
            f"the chat template of {self.model_name} failed on this conversation "
            f"({type(first_error).__name__}); try another model"
        )


def fold_for_strict_templates(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """System text moved into the first user message; consecutive messages of one role joined."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"])
    out: list[dict[str, str]] = []
    for m in messages:
        if m["role"] == "system":
            continue
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append({"role": m["role"], "content": m["content"]})
    if system:
        if out and out[0]["role"] == "user":
            out[0] = {"role": "user", "content": f"{system}\n\n{out[0]['content']}"}
        else:
            out.insert(0, {"role": "user", "content": system})
    return out


__all__ = ["DEFAULT_CHAT_TEMPLATE", "ChatTemplate", "fold_for_strict_templates"]
