"""Recordings are kept only with "record_voice" consent, and then only encrypted in the profile."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tara_desktop.voice.recordings import keep_recording, load_recording


def test_recordings_follow_consent_and_stay_encrypted(tmp_path: Path) -> None:
    from tara_desktop.profile import Profile

    home = Path(os.environ["TARA_HOME"])
    t = np.arange(16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    profile = Profile.open(home)
    try:
        profile.consent.set("record_voice", False)
        assert keep_recording(profile, audio, 16000) is None
        assert profile.store.list_blobs("voice") == []
        profile.consent.set("record_voice", True)
        bid = keep_recording(profile, audio, 16000, name="my question")
        assert bid is not None
        back, sr = load_recording(profile, bid)
        assert sr == 16000 and np.max(np.abs(back - audio)) < 1e-3
    finally:
        profile.close()
    # Nothing in plain text on disk: no WAV header anywhere in the profile folder.
    for path in home.rglob("*"):
        if path.is_file():
            assert b"WAVEfmt " not in path.read_bytes()
