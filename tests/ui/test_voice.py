"""A spoken turn through the chat pane: Whisper tiny.en hears real espeak-ng speech (no consent is needed for
the microphone); the recording is kept only with the "record_voice" consent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

TIMEOUT = 180_000


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng makes the test speech")
def test_a_spoken_question_shows_transcript_states_and_reply(qtbot: Any, window: Any, tmp_path: Path) -> None:
    from tara_desktop.voice.audio import read_wav

    wav = tmp_path / "question.wav"
    subprocess.run(["espeak-ng", "-v", "en-gb-x-rp", "-s", "150", "-w", str(wav), "how can i sleep better at night"],
                   check=True, capture_output=True)
    audio, sr = read_wav(wav)
    chat = window.chat
    states: list[str] = []
    original = chat.voice_state.set_state

    def record(state: str) -> None:
        states.append(state)
        original(state)

    chat.voice_state.set_state = record  # type: ignore[method-assign]
    with qtbot.waitSignal(chat.turn_finished, timeout=TIMEOUT) as blocker:
        chat.voice.start_turn(audio, sr)
        assert chat.busy
    qtbot.waitUntil(lambda: not chat.busy, timeout=TIMEOUT)
    result = blocker.args[0]
    user, reply = chat.view.bubbles
    assert "sleep better" in user.content.lower()  # the transcript is shown as the user's message
    assert reply.content == result.reply
    assert states[:2] == ["transcribing", "thinking"] and states[-1] == "idle"
    stored = chat.store.messages(result.conversation_id)
    assert stored[0].meta.get("source") == "voice"
    engine = stored[0].meta.get("emotion_engine")  # what heard the emotion, kept for a reload
    assert engine in ("speechbrain", "prosody+words", "prosody", "words", "none")
    assert reply.meta.get("emotion_engine") == engine
    profile = window.session.assistant.profile
    assert profile.consent.get("record_voice") is False and profile.consent.collected("record_voice") == 0


@pytest.mark.slow
def test_pressing_push_to_talk_warms_the_offline_voice_and_closing_ends_it(qtbot: Any, window: Any) -> None:
    """Piper's cold start is paid while the person is still speaking (from the first press), not on the
    first spoken reply; people who only type never start it; closing the window ends the process."""
    from tara_desktop.voice.piper import PiperTts

    voice = window.chat.voice
    assert voice._engines is None  # typing only: no voice engines, no Piper
    voice.on_press()  # (no microphone on a test machine: the banner says so; the voice still warms up)
    voice.on_release()
    assert voice._engines is not None and voice._engines.tts is not None
    tts = voice._engines.tts
    warming = tts.warm_up()  # the thread the press started (a second call adds nothing)
    warming.join(120)
    assert not warming.is_alive()
    pipers = [e for e in tts.fallbacks if isinstance(e, PiperTts)]
    assert pipers and pipers[0]._proc is not None and pipers[0]._proc.poll() is None
    assert pipers[0]._spoken_by is pipers[0]._proc  # warm: it has spoken once
    proc = pipers[0]._proc
    window.close()
    assert proc.wait(30) is not None  # the Piper process ends with the window
    assert voice._engines is None


def test_saved_voice_settings_rebuild_the_engines(qtbot: Any, window: Any) -> None:
    """Turning "Speak replies" off in Settings takes effect on the next spoken turn, without a restart."""
    voice = window.chat.voice
    assistant = window.session.assistant
    assert voice.engines().tts is not None  # speak_replies is on by default
    assistant.save_settings({"voice": {"speak_replies": False}})
    assert voice.engines().tts is None


def test_a_voice_model_installed_on_the_models_page_is_used_from_the_next_spoken_turn(window: Any) -> None:
    voice = window.chat.voice
    before = voice.engines()
    page = window.page("Models")
    page.voice_models.installed.emit("whisper-base")  # what the panel says when an install finished
    assert voice._engines is None  # the next turn looks for its models again
    assert voice.engines() is not before
