"""The OpenAI-compatible HTTP API (Starlette): routes, the access guard, and the streaming bridge.

Routes (all under ``/v1``, all needing ``Authorization: Bearer <token>``):

- ``GET  /v1/models`` — ``tara``, ``tara:<domain>`` for each domain, and the installed models;
- ``POST /v1/chat/completions`` — streamed (server-sent events) or not; the response carries TARA's
  routing decision in an extra ``tara`` field ``{domain, confidence, model, adapter}``;
- ``POST /v1/audio/transcriptions`` — a multipart WAV file → ``{"text": ...}`` through TARA's ASR;
- ``POST /v1/audio/speech`` — ``{"input": text}`` → a WAV file from the offline voice;
- ``POST /v1/embeddings`` — sentence embeddings from the router's model (:mod:`~tara_desktop.server.embeddings`).

Every refusal is an OpenAI-style ``{"error": {...}}`` with a 4xx status (401 no token, 404 unknown model
or path, 405, 413 body too big, 400 malformed JSON or bad parameters, 429/503 when busy); an unexpected
failure is a 500 with no traceback. No CORS headers are ever sent, so browsers cannot read responses.
A turn runs in its own thread; its tokens cross to the event loop through a queue, and a client that
goes away (disconnect) cancels the turn's job state, which stops the model within a token.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.server.errors import ApiError, bad_request, unauthorized
from tara_desktop.server.lanes import Lanes
from tara_desktop.server.log import RequestLog, RequestRecord
from tara_desktop.server.pipeline import STORE_HEADER, ChatPipeline
from tara_desktop.server.schema import ChatRequest, parse_chat_request, parse_speech_request
from tara_desktop.server.token import token_matches

if TYPE_CHECKING:
    from tara_desktop.assistant import Assistant
    from tara_desktop.turn import RouteEvent, TurnEvent, TurnResult

log = logging.getLogger("tara_desktop.server")
# python-multipart logs bytes of a malformed upload at WARNING: none of a request's content goes to logs
logging.getLogger("python_multipart").setLevel(logging.ERROR)

CHAT_LANE = "chat"  # the pipeline runs one turn at a time (Assistant.turn_lock): one lane for all models
VOICE_LANE = "voice"
EMBEDDING_LANE = "embeddings"  # the router's embedding model, apart from the chat model and the voice

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask of the server."""

    max_body_bytes: int = 1 << 20  # JSON requests
    max_audio_bytes: int = 25 << 20  # a transcription upload (OpenAI's own limit)
    max_waiting: int = 8  # requests queued behind the running one in a lane (more: 429)
    max_total: int = 32  # requests held at once, running or queued (more: 503)


def _error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class _BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes; send less",
                         code="request_too_large")


class ApiService:
    """The state one server holds: the assistant's pipeline, the token, the queues and the request log.

    ``token_hook(n, state)`` (tests only) is called on the turn's thread after the n-th streamed token.
    """

    def __init__(
        self,
        assistant: Assistant,
        token: str,
        *,
        limits: Limits | None = None,
        request_log: RequestLog | None = None,
        token_hook: Callable[[int, JobState], None] | None = None,
    ) -> None:
        self.assistant = assistant
        self.pipeline = ChatPipeline(assistant)
        self.token = token
        self.limits = limits or Limits()
        self.lanes = Lanes(self.limits.max_waiting, self.limits.max_total)
        self.log = request_log or RequestLog()
        self.token_hook = token_hook
        self._active: set[JobState] = set()
        self._active_lock = threading.Lock()

    def cancel_all(self) -> None:
        """Cancel every running or queued turn (the server is stopping)."""
        with self._active_lock:
            for state in self._active:
                state.cancel()

    # -- the access guard (pure ASGI, around every route) --------------------------------------------
    def guard(self, app: ASGIApp) -> ASGIApp:
        service = self

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            info: dict[str, Any] = {}
            scope["tara.log"] = info
            status = {"code": 500}

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = int(message["status"])
                    status["sent"] = 1
                await send(message)

            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            try:
                if not token_matches(headers.get("authorization"), service.token):
                    await _error_response(unauthorized())(scope, receive, sending)
                    return
                path = str(scope.get("path", ""))
                limit = service.limits.max_audio_bytes if path.startswith("/v1/audio/transcriptions") \
                    else service.limits.max_body_bytes
                declared = headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    await _error_response(_BodyTooLarge(limit))(scope, receive, sending)
                    return
                seen = {"n": 0}

                async def receiving() -> Message:
                    message = await receive()
                    if message["type"] == "http.request":
                        seen["n"] += len(message.get("body", b""))
                        if seen["n"] > limit:
                            raise _BodyTooLarge(limit)
                    return message

                try:
                    await app(scope, receiving, sending)
                except Exception as exc:  # already answered 500 by Starlette: keep the traceback out of logs
                    log.error("request to %s failed unexpectedly: %s", scope.get("path", "?"), exc.__class__.__name__)
                    if status["code"] == 500 and not status.get("sent"):
                        crash = ApiError(500, "the server failed to answer; see TARA's log", type="server_error",
                                         code="internal_error")
                        try:
                            await _error_response(crash)(scope, receive, sending)
                        except Exception:
                            pass
            finally:
                service.log.add(RequestRecord(
                    at=time.time(),
                    method=str(scope.get("method", "")),
                    path=str(scope.get("path", ""))[:80],
                    status=status["code"],
                    seconds=time.perf_counter() - started,
                    **info,
                ))

        return guarded

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    async def _json(request: Request) -> Any:
        body = await request.body()
        if not body.strip():
            raise bad_request("the request body is empty; send a JSON object")
        try:
            return json.loads(body)
        except UnicodeDecodeError:
            raise bad_request("the request body is not UTF-8 JSON") from None
        except json.JSONDecodeError as exc:
            raise bad_request(f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} "
                              f"column {exc.colno})") from None

    def _track(self, state: JobState, on: bool) -> None:
        with self._active_lock:
            if on:
                self._active.add(state)
            else:
                self._active.discard(state)

    # -- GET /v1/models -----------------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        names = await asyncio.to_thread(self.pipeline.model_names)
        created = int(time.time())
        rows = [{"id": "tara", "object": "model", "created": created, "owned_by": "tara",
                 "tara": {"routing": "per message"}}]
        rows += [{"id": f"tara:{d}", "object": "model", "created": created, "owned_by": "tara",
                  "tara": {"routing": "pinned", "domain": d}} for d in self.pipeline.domains()]
        rows += [{"id": name, "object": "model", "created": created, "owned_by": "local"} for name in sorted(names)]
        return JSONResponse({"object": "list", "data": rows})

    # -- POST /v1/chat/completions -------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        info: dict[str, Any] = request.scope.get("tara.log", {})
        chat = parse_chat_request(await self._json(request))
        info["model"] = chat.model[:64]
        pinned, model_path = await asyncio.to_thread(self.pipeline.resolve_model, chat.model)
        store = chat.store or _truthy(request.headers.get(STORE_HEADER))
        turn = self.pipeline.turn_request(chat, pinned, model_path, store=store)
        ticket = self.lanes.reserve(CHAT_LANE, "the model")
        state = JobState()
        self._track(state, True)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def put(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the event loop is gone (server stopped): nobody is listening
                state.cancel()

        def work() -> None:
            try:
                if not ticket.wait(state):
                    put("cancelled", None)
                    return
                count = 0

                def on_event(event: TurnEvent) -> None:
                    nonlocal count
                    if event.kind == "token":
                        count += 1
                        put("token", event.text)
                        if self.token_hook is not None:
                            self.token_hook(count, state)
                    else:
                        put(event.kind, event)

                put("done", self.pipeline.run(turn, state, on_event))
            except ApiError as exc:
                put("error", exc)
            except BaseException as exc:  # never a traceback to the client; the type only in the log
                log.error("chat turn failed unexpectedly: %s", exc.__class__.__name__)
                put("error", ApiError(500, "the server failed to answer; see TARA's log", type="server_error",
                                      code="internal_error"))
            finally:
                ticket.release()
                self._track(state, False)

        threading.Thread(target=work, name="tara-api-turn", daemon=True).start()
        watcher = asyncio.create_task(self._cancel_on_disconnect(request, state))
        route: RouteEvent | None = None
        try:
            # wait until the model is loaded and about to answer: errors until then are a clean 4xx/5xx
            while True:
                kind, value = await queue.get()
                if kind == "route":
                    route = value
                    info["domain"] = value.domain
                elif kind in ("window", "token", "done"):
                    break
                elif kind == "error":
                    info["finish"] = value.code or "error"
                    raise value
                elif kind == "cancelled":
                    info["finish"] = "cancelled"
                    return Response(status_code=499)
        except BaseException:
            state.cancel()
            watcher.cancel()
            raise
        first = (kind, value)
        if chat.stream:
            return StreamingResponse(
                self._sse(chat, route, first, queue=queue, state=state, watcher=watcher, info=info),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            return await self._complete(chat, route, first, queue, info)
        finally:
            watcher.cancel()

    @staticmethod
    async def _cancel_on_disconnect(request: Request, state: JobState) -> None:
        """Cancel the turn when the client goes away (the body is read: the next message is a disconnect)."""
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                state.cancel()
                return

    @staticmethod
    def _routing(route: RouteEvent | None) -> dict[str, Any] | None:
        if route is None:
            return None
        return {"domain": route.domain, "confidence": round(float(route.confidence), 4), "model": route.model,
                "adapter": route.adapter}

    @staticmethod
    def _finish(result: TurnResult) -> str:
        reason = str(getattr(result, "finish_reason", "stop"))
        return "length" if reason == "length" else "stop"

    def _record(self, info: dict[str, Any], result: TurnResult) -> None:
        info["prompt_tokens"] = int(result.prompt_tokens)
        info["completion_tokens"] = int(result.completion_tokens)
        info["finish"] = str(result.finish_reason)
        info["stored"] = result.conversation_id is not None

    async def _complete(
        self, chat: ChatRequest, route: RouteEvent | None, first: tuple[str, Any], queue: asyncio.Queue[tuple[str, Any]],
        info: dict[str, Any],
    ) -> Response:
        kind, value = first
        pieces: list[str] = []
        while kind != "done":
            if kind == "token":
                pieces.append(value)
            elif kind == "error":
                raise value
            kind, value = await queue.get()
        result = value
        self._record(info, result)
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                 "total_tokens": result.prompt_tokens + result.completion_tokens}
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "system_fingerprint": None,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": result.reply, "refusal": None},
                "logprobs": None,
                "finish_reason": self._finish(result),
            }],
            "usage": usage,
            "tara": {**(self._routing(route) or {}), "conversation_id": result.conversation_id},
        }
        return JSONResponse(body)

    async def _sse(
        self, chat: ChatRequest, route: RouteEvent | None, first: tuple[str, Any], *, queue: asyncio.Queue[tuple[str, Any]],
        state: JobState, watcher: asyncio.Task[None], info: dict[str, Any],
    ) -> AsyncIterator[str]:
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        routing = self._routing(route)

        def event(choices: list[dict[str, Any]], **extra: Any) -> str:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": chat.model,
                   "system_fingerprint": None, "choices": choices, **extra}
            return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

        def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

        finished = False
        try:
            yield event(delta({"role": "assistant", "content": ""}), tara=routing)
            kind, value = first
            while True:
                if kind == "token":
                    yield event(delta({"content": value}))
                elif kind == "error":  # the model failed mid-reply: say so in the stream, as OpenAI does
                    info["finish"] = value.code or "error"
                    yield f"data: {json.dumps(value.body())}\n\n"
                    break
                elif kind == "done":
                    result = value
                    self._record(info, result)
                    yield event(delta({}, self._finish(result)),
                                tara={**(routing or {}), "conversation_id": result.conversation_id})
                    if chat.include_usage:
                        yield event([], usage={
                            "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                            "total_tokens": result.prompt_tokens + result.completion_tokens})
                    break
                kind, value = await queue.get()
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            watcher.cancel()
            if not finished:  # the client went away mid-stream: stop the model now, log how far it got
                state.cancel()
                info["finish"] = "cancelled"
                with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                    while True:
                        kind, value = await queue.get()
                        if kind == "done":
                            self._record(info, value)
                            info["finish"] = "cancelled"
                            break
                        if kind in ("error", "cancelled"):
                            break

    # -- audio --------------------------------------------------------------------------------------
    async def transcriptions(self, request: Request) -> Response:
        from tara_desktop.server import voice_adapter

        info: dict[str, Any] = request.scope.get("tara.log", {})
        try:
            form = await request.form(max_files=1, max_fields=16, max_part_size=1 << 20)
        except HTTPException as exc:
            raise bad_request(f"the upload is not valid multipart form data ({exc.detail}); "
                              "send the WAV as the 'file' field") from None
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise bad_request("the 'file' field is missing; send the WAV as a file upload", param="file")
            data = await upload.read()
            fmt = form.get("response_format") or "json"
            model = form.get("model")
        finally:
            await form.close()
        info["model"] = str(model)[:64] if isinstance(model, str) else None
        if fmt not in ("json", "text", "verbose_json"):
            raise bad_request(f"response_format {fmt!r} is not available; use json, text or verbose_json",
                              param="response_format")
        if not data.startswith(b"RIFF") or data[8:12] != b"WAVE":
            raise bad_request("the file is not a WAV file; send 16-bit PCM WAV audio", param="file")
        voice = self.assistant.configs.app.voice
        text, engine = await self._in_lane(VOICE_LANE, "speech recognition",
                                           lambda _state: voice_adapter.transcribe_wav(data, voice))
        info["finish"] = engine
        if fmt == "text":
            return PlainTextResponse(text)
        if fmt == "verbose_json":
            return JSONResponse({"task": "transcribe", "language": "english", "text": text, "tara": {"engine": engine}})
        return JSONResponse({"text": text})

    async def speech(self, request: Request) -> Response:
        from tara_desktop.server import voice_adapter

        info: dict[str, Any] = request.scope.get("tara.log", {})
        text, voice_name = parse_speech_request(await self._json(request))
        voice = self.assistant.configs.app.voice
        wav, engine = await self._in_lane(VOICE_LANE, "the voice",
                                          lambda _state: voice_adapter.speak_wav(text, voice, None))
        info["finish"] = engine
        del voice_name  # OpenAI voice names (alloy, ...) do not exist offline: TARA's voice speaks
        return Response(wav, media_type="audio/wav")

    # -- POST /v1/embeddings -----------------------------------------------------------------------
    async def embeddings(self, request: Request) -> Response:
        from tara_desktop.server.embeddings import embeddings_response, parse_embeddings_request

        info: dict[str, Any] = request.scope.get("tara.log", {})
        router = self.assistant.router
        asked = parse_embeddings_request(await self._json(request), router)
        info["model"] = asked.model[:64]
        body = await self._in_lane(EMBEDDING_LANE, "the embedding model", functools.partial(embeddings_response, router, asked))
        info["prompt_tokens"] = int(body["usage"]["prompt_tokens"])
        return JSONResponse(body)

    async def _in_lane(self, lane: str, what: str, job: Callable[[JobState], T]) -> T:
        """Run ``job(state)`` on a worker thread once the lane has room; ``state`` is cancelled when the
        client goes away, so a long job can stop between its steps."""
        ticket = self.lanes.reserve(lane, what)
        state = JobState()

        def run() -> T:
            try:
                if not ticket.wait(state):
                    raise ApiError(503, "the request was cancelled while waiting", type="server_error")
                return job(state)
            finally:
                ticket.release()

        try:
            return await asyncio.to_thread(run)
        except (ApiError, asyncio.CancelledError):
            state.cancel()
            raise
        except TaraError as exc:
            raise bad_request(str(exc)) from None


def build_app(service: ApiService) -> ASGIApp:
    """The ASGI application for ``service``: the routes behind the access guard."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = {404: f"there is no {request.url.path} here; the API is under /v1",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return _error_response(ApiError(exc.status_code, message, code=code))

    async def on_crash(request: Request, exc: Exception) -> Response:  # logged (type only) by the guard
        return _error_response(ApiError(500, "the server failed to answer; see TARA's log", type="server_error",
                                        code="internal_error"))

    app = Starlette(
        routes=[
            Route("/v1/models", service.models, methods=["GET"]),
            Route("/v1/chat/completions", service.chat, methods=["POST"]),
            Route("/v1/audio/transcriptions", service.transcriptions, methods=["POST"]),
            Route("/v1/audio/speech", service.speech, methods=["POST"]),
            Route("/v1/embeddings", service.embeddings, methods=["POST"]),
        ],
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error, Exception: on_crash},
    )
    return service.guard(app)
