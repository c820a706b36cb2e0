"""Resumable model downloads over HTTP(S) with the standard library.

``download(url, dest, sha256=..., state=...)`` writes into ``dest.part``, resuming with an HTTP Range
request when a ``.part`` is already there (after a dropped connection, a cancel or a crash). When the
file is complete its sha256 is checked (when known) and it is validated as GGUF; only then is it moved to
``dest`` in one atomic step. A wrong checksum or an invalid file deletes the ``.part`` and raises a
:class:`~tara_desktop.errors.TaraError`. A cancel keeps the ``.part`` so the next attempt resumes. A file
larger than the free disk space is refused before a byte is written.

:func:`download_catalog_model` is the one job behind ``tara models download``, the Models page and the
welcome: download a catalog model into the user's models folder and register it.
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
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tara_desktop import __version__
from tara_desktop.errors import TaraError
from tara_desktop.files import fsync_path
from tara_desktop.jobs import JobState
from tara_desktop.llm import gguf_file
from tara_desktop.llm.gguf_reader import InvalidGguf
from tara_desktop.llm.memory import free_disk_bytes, human

if TYPE_CHECKING:
    from tara_desktop.llm.catalog import Catalog, CatalogModel
    from tara_desktop.llm.library import InstalledModel, ModelLibrary

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadError(TaraError):
    """A download failed; the message says why and what to do."""


class Unreachable(DownloadError):
    """The server could not be reached at all (offline, no DNS, refused)."""


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
    if total is not None:
        check_disk_space(part.parent, total - have, name)
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


def check_disk_space(folder: Path, n_bytes: int, name: str) -> None:
    """Refuse a download of ``n_bytes`` more into ``folder`` when its disk has less free space."""
    free = free_disk_bytes(folder)
    if free is not None and n_bytes > free:
        raise DownloadError(
            f"{name} needs {human(n_bytes)} more disk space but only {human(free)} are free on the disk of "
            f"{folder}: free some space and try again"
        )


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
                raise Unreachable(
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
        except InvalidGguf as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(f"the downloaded {name} is not a usable GGUF model ({exc}); the copy was deleted") from None
    os.replace(part, dest)
    fsync_path(dest.parent)
    state.report(1.0, f"downloaded {name}")
    return dest


def download_catalog_model(
    entry: CatalogModel,
    models_dir: Path,
    library: ModelLibrary,
    *,
    state: JobState,
    catalog: Catalog | None = None,
) -> tuple[InstalledModel, str]:
    """Download ``entry`` into ``models_dir`` (resumable, checksummed when the catalog has the sha256, checked
    against the free disk) and register it in ``library``. Returns the model and what happened:
    ``"downloaded"``, ``"registered"`` (the file was there, now it is in the library) or ``"already"``."""
    if entry.bundled or entry.source is None:
        raise DownloadError(f"{entry.id} ships with TARA and is not downloaded")
    dest = Path(models_dir) / entry.file
    known = next((m for m in library.models() if m.path == dest.resolve()), None)
    if known is not None and dest.exists():
        return known, "already"
    status = "registered"
    if not dest.exists():
        size = entry.size_bytes or entry.weights_bytes()
        if size:
            have = part_path(dest).stat().st_size if part_path(dest).exists() else 0
            check_disk_space(dest.parent, max(0, size - have), dest.name)
        download(entry.source, dest, sha256=entry.sha256, state=state, expected_size=entry.size_bytes)
        status = "downloaded"
    if known is not None:
        return known, status
    return library.add(dest, name=entry.id, origin="downloaded", catalog=catalog, state=state), status
