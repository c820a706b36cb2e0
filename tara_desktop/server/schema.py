"""Checking an OpenAI chat-completions request and turning it into what the pipeline needs.

Every problem is an :class:`~tara_desktop.server.errors.ApiError` (400) naming the parameter, the way
OpenAI's API answers, so a client sees what to fix; nothing here raises anything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tara_desktop.server.errors import bad_request

ROLES = ("system", "developer", "user", "assistant")
MAX_STOPS = 4
MAX_MESSAGES = 1024


@dataclass(frozen=True)
class ChatRequest:
    """A checked chat request. ``overrides`` holds only the sampling settings the client set."""

    model: str
    messages: list[dict[str, str]]
    stream: bool = False
    include_usage: bool = False
    store: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def last_user_text(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts: only text parts are understood
        texts: list[str] = []
        for j, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_request(
                    f"{where}.content[{j}] is not a text part; this server understands text only "
                    "({'type': 'text', 'text': ...})",
                    param=f"{where}.content",
                )
            texts.append(part["text"])
        return "\n".join(texts)
    if value is None:
        raise bad_request(f"{where}.content is missing; give the message text", param=f"{where}.content")
    raise bad_request(f"{where}.content must be a string or a list of text parts", param=f"{where}.content")


def parse_messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list):
        raise bad_request("'messages' must be a list of {role, content} objects", param="messages")
    if not raw:
        raise bad_request("'messages' is empty; send at least one user message", param="messages")
    if len(raw) > MAX_MESSAGES:
        raise bad_request(f"'messages' has {len(raw)} items; send at most {MAX_MESSAGES}", param="messages")
    out: list[dict[str, str]] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where} must be an object with 'role' and 'content'", param=where)
        role = message.get("role")
        if role not in ROLES:
            raise bad_request(
                f"{where}.role is {role!r}; use one of {', '.join(repr(r) for r in ROLES)} "
                "(tool calls are not supported)",
                param=f"{where}.role",
            )
        text = _content(message.get("content"), where)
        if "\x00" in text:
            raise bad_request(f"{where}.content contains a NUL character", param=f"{where}.content")
        out.append({"role": "system" if role == "developer" else str(role), "content": text})
    if out[-1]["role"] != "user":
        raise bad_request("the last message must be from the user (role 'user')", param="messages")
    if not out[-1]["content"].strip():
        raise bad_request("the last user message is empty; say something", param=f"messages[{len(out) - 1}].content")
    return out


def _number(body: dict[str, Any], name: str, lo: float, hi: float, *, lo_open: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(f"'{name}' must be a number", param=name)
    if value < lo or value > hi or (lo_open and value == lo):
        left = "(" if lo_open else "["
        raise bad_request(f"'{name}' is {value}; it must be in {left}{lo:g}, {hi:g}]", param=name)
    return float(value)


def _integer(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{name}' must be an integer", param=name)
    if value < lo or value > hi:
        raise bad_request(f"'{name}' is {value}; it must be between {lo} and {hi}", param=name)
    return value


def parse_chat_request(body: Any) -> ChatRequest:
    """Check a decoded JSON body of ``POST /v1/chat/completions``."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("'model' is missing; use 'tara' (routed), 'tara:<domain>' or a name from /v1/models",
                          param="model")
    messages = parse_messages(body.get("messages"))
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object", param="stream_options")
    include_usage = bool((options or {}).get("include_usage", False))
    n = _integer(body, "n", 1, 1)
    del n  # only one choice per request
    tools = body.get("tools")
    if tools:
        raise bad_request("tools / function calling are not supported by this server", param="tools")
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise bad_request("only response_format {'type': 'text'} is supported", param="response_format")
    if body.get("logprobs"):
        raise bad_request("logprobs are not supported by this server", param="logprobs")
    store = body.get("store", False)
    if store is not None and not isinstance(store, bool):
        raise bad_request("'store' must be true or false", param="store")

    overrides: dict[str, Any] = {}
    temperature = _number(body, "temperature", 0.0, 2.0)
    if temperature is not None:
        overrides["temperature"] = temperature
    top_p = _number(body, "top_p", 0.0, 1.0, lo_open=True)
    if top_p is not None:
        overrides["top_p"] = top_p
    max_tokens = _integer(body, "max_completion_tokens", 1, 1_000_000)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, 1_000_000)
    if max_tokens is not None:
        overrides["max_tokens"] = max_tokens
    seed = _integer(body, "seed", -(2**63), 2**63 - 1)
    if seed is not None:
        overrides["seed"] = seed % (2**31)  # llama.cpp takes a 32-bit seed; negative seeds stay valid
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise bad_request("'stop' must be a string or a list of strings", param="stop")
        if len(stops) > MAX_STOPS:
            raise bad_request(f"'stop' has {len(stops)} strings; give at most {MAX_STOPS}", param="stop")
        if any(s for s in stops):
            overrides["stop"] = tuple(s for s in stops if s)
    return ChatRequest(
        model=model.strip(),
        messages=messages,
        stream=bool(stream),
        include_usage=include_usage,
        store=bool(store),
        overrides=overrides,
    )


def parse_speech_request(body: Any) -> tuple[str, str | None]:
    """``POST /v1/audio/speech``: the text to speak and the voice asked for (None: the default)."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise bad_request("'input' is missing or empty; give the text to speak", param="input")
    if len(text) > 4096:
        raise bad_request(f"'input' is {len(text)} characters; give at most 4096", param="input")
    fmt = body.get("response_format")
    if fmt not in (None, "wav"):
        raise bad_request(f"response_format {fmt!r} is not available; this server speaks 'wav'",
                          param="response_format")
    voice = body.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise bad_request("'voice' must be a string", param="voice")
    return text, voice
