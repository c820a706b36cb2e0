"""Resumable model downloads over HTTP(S) with the standard library.

``download(url, dest, sha256=..., state=...)`` writes into ``dest.part``, resuming with an HTTP Range
request when a ``.part`` is already there (after a dropped connection, a cancel or a crash). When the
file is complete its sha256 is checked (when known) and it is validated as GGUF; only then is it moved to
``dest`` in one atomic step. A wrong checksum or an invalid file deletes the ``.part`` and raises a
:class:`~tara_desktop.errors.TaraError`. A cancel keeps the ``.part`` so the next attempt resumes.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tara_desktop import __version__
from tara_desktop.errors import TaraError
from tara_desktop.files import fsync_path
from tara_desktop.jobs import JobState
from tara_desktop.llm import gguf_file

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadError(TaraError):
    """A download failed; the message says why and what to do."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


class _Dropped(Exception):
    """The connection ended before the file was complete: resume from what we have."""


def _open(url: str, have: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"TARA/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)  # type: ignore[no-any-return]


def _receive(
    resp: http.client.HTTPResponse, part: Path, have: int, *, name: str, state: JobState, expected_size: int | None
) -> tuple[int, int | None]:
    """Append the response body to ``part``; returns (bytes now in part, total size or None)."""
    status = resp.status
    total: int | None = None
    if status == 206:
        match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != have:
            have = 0  # the server sent some other range: start over
            part.unlink(missing_ok=True)
            raise _Dropped()
        total = None if match.group(3) == "*" else int(match.group(3))
    else:  # 200: the whole file (the server ignored or did not get a Range header)
        if have:
            log.info("server ignored the range request; restarting the download")
        have = 0
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    if expected_size is not None and total is not None and total != expected_size:
        raise DownloadError(
            f"the server offers {total} bytes but the catalog says the file has {expected_size}: "
            "the file on the server changed; check the catalog entry"
        )
    with open(part, "ab" if have else "wb") as out:
        while True:
            state.check()
            try:
                chunk = resp.read(CHUNK)
            except (http.client.IncompleteRead, OSError) as exc:
                out.flush()
                raise _Dropped() from exc
            if not chunk:
                break
            out.write(chunk)
            have += len(chunk)
            if total:
                state.report(have / total, f"downloading {name}: {_mb(have)} of {_mb(total)}")
            else:
                state.report(None, f"downloading {name}: {_mb(have)}")
        out.flush()
        os.fsync(out.fileno())
    if total is not None and have < total:
        raise _Dropped()
    return have, total


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    state: JobState,
    expected_size: int | None = None,
    timeout: float = 30.0,
    max_retries: int = 5,
    retry_delay: float = 1.0,
    validate: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, checksummed, validated as GGUF, moved into place atomically)."""
    dest = Path(dest)
    name = dest.name
    host = urlsplit(url).hostname or url
    if urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"{url} is not an http(s) address: check the catalog entry")
    if dest.exists():
        raise DownloadError(f"{dest} already exists: remove it first or register it with `tara models add`")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the folder {dest.parent} ({exc.strerror or exc}): check its permissions") from None
    part = part_path(dest)
    failures = 0  # consecutive failures without any progress
    while True:
        state.check()
        have = part.stat().st_size if part.exists() else 0
        try:
            resp = _open(url, have, timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and have:
                # our .part is as long as (or longer than) the file: check it as it is, or start over
                match = re.search(r"/(\d+)", exc.headers.get("Content-Range", "") if exc.headers else "")
                if match and int(match.group(1)) == have:
                    break
                part.unlink(missing_ok=True)
                continue
            if exc.code in (404, 410):
                raise DownloadError(
                    f"the server has no file at {url} (HTTP {exc.code}): check the address or the catalog entry"
                ) from None
            if exc.code in (401, 403):
                raise DownloadError(
                    f"the server refused the download of {url} (HTTP {exc.code}): the model may need you to "
                    "accept its license on the website first, then download it there and use `tara models add`"
                ) from None
            if exc.code < 500 or failures >= max_retries:
                raise DownloadError(f"the download of {name} failed (HTTP {exc.code} {exc.reason}): try again later") from None
            failures += 1
            time.sleep(retry_delay * failures)
            continue
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            offline = isinstance(reason, (socket.gaierror, ConnectionRefusedError)) and failures == 0 and not have
            if offline or failures >= max_retries:
                kept = f"; the {_mb(have)} already downloaded are kept and the download resumes next time" if have else ""
                raise DownloadError(
                    f"cannot reach {host} ({reason}): check the internet connection and try again{kept}"
                ) from None
            failures += 1
            time.sleep(retry_delay * failures)
            continue
        before = have
        try:
            with resp:
                have, _total = _receive(resp, part, have, name=name, state=state, expected_size=expected_size)
            break
        except _Dropped:
            now = part.stat().st_size if part.exists() else 0
            failures = 0 if now > before else failures + 1
            if failures > max_retries:
                raise DownloadError(
                    f"the connection to {host} keeps dropping: try again later; the {_mb(now)} already downloaded "
                    "are kept and the download resumes next time"
                ) from None
            log.info("download interrupted; resuming")
            if failures:
                time.sleep(retry_delay * failures)

    if sha256:
        state.report(None, f"checking {name}")
        digest = gguf_file.sha256_file(part, state=state)
        if digest != sha256.strip().lower():
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"the downloaded {name} has sha256 {digest} but {sha256.strip().lower()} was expected: the "
                "download was damaged or the file on the server changed; the bad copy was deleted, try again"
            )
    if validate:
        try:
            gguf_file.validate(part)
        except gguf_file.InvalidGguf as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(f"the downloaded {name} is not a usable GGUF model ({exc}); the copy was deleted") from None
    os.replace(part, dest)
    fsync_path(dest.parent)
    state.report(1.0, f"downloaded {name}")
    return dest
