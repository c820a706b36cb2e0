"""TARA's local OpenAI-compatible API over the same routed, private pipeline as the app.

- :mod:`~tara_desktop.server.app` — the Starlette routes, the access guard and the streaming bridge;
- :mod:`~tara_desktop.server.pipeline` — one API request as a turn of :meth:`Assistant.turn`;
- :mod:`~tara_desktop.server.schema` — checking requests (OpenAI-style 400s);
- :mod:`~tara_desktop.server.lanes` — fair bounded queues (429/503 beyond them);
- :mod:`~tara_desktop.server.token` — the bearer token kept in the encrypted profile;
- :mod:`~tara_desktop.server.runner` — uvicorn in a thread (``tara serve`` and the Settings switch);
- :mod:`~tara_desktop.server.log` — the content-free request log;
- :mod:`~tara_desktop.server.voice_adapter` — the ASR/TTS calls the audio routes make.

Nothing here is imported by ``tara --help``: Starlette and uvicorn load when a server starts.
"""
