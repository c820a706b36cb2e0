"""Keeping a push-to-talk recording: only with the user's "record_voice" consent, only in the encrypted profile.

Audio is never written to a plain file (the user-requested ``--out`` of the CLI aside). With consent on, a
recording goes into the profile as an encrypted blob of kind ``"voice"``; with consent off nothing is kept.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy.typing as npt

from tara_desktop.voice.audio import Audio, read_wav_bytes, wav_bytes

if TYPE_CHECKING:
    from tara_desktop.profile import Profile

log = logging.getLogger(__name__)

BLOB_KIND = "voice"


def keep_recording(profile: Profile, audio: npt.ArrayLike, sr: int, *, name: str | None = None) -> int | None:
    """Store the recording in the profile when "record_voice" consent is on; return the blob id, or None
    (consent off: nothing was stored)."""
    if not profile.consent.get("record_voice"):
        return None
    blob_id = profile.store.put_blob(BLOB_KIND, name or time.strftime("ptt-%Y%m%d-%H%M%S"), wav_bytes(audio, sr))
    log.info("kept a voice recording in the profile (blob %d)", blob_id)
    return blob_id


def load_recording(profile: Profile, blob_id: int) -> tuple[Audio, int]:
    """A kept recording back as (mono float32, sample rate)."""
    return read_wav_bytes(profile.store.get_blob(blob_id))
