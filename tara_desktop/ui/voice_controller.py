"""Push-to-talk wiring: microphone while held, then ``tara_desktop.voice.turn.run_voice_turn`` off the GUI thread.

The voice turn is plain Python; this object only opens the microphone on press, shows the level, and on
release runs the turn on a :class:`~tara_desktop.ui.workers.JobThread`, turning its events into the state
indicator and the chat pane's bubbles. Pressing again while TARA speaks interrupts it (barge-in).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from PySide6.QtCore import QObject, QTimer

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui.workers import JobThread

log = logging.getLogger(__name__)

MIN_SECONDS = 0.3


def level_from_dbfs(dbfs: float) -> float:
    """Map -60..0 dBFS to 0..1 for the meter."""
    if not math.isfinite(dbfs):
        return 0.0
    return min(1.0, max(0.0, (dbfs + 60.0) / 60.0))


class VoiceController(QObject):
    """Connects a chat pane's push-to-talk controls to the voice engines."""

    def __init__(self, pane: Any) -> None:
        super().__init__(pane)
        self.pane = pane
        self.mic: Any = None
        self.job: JobThread | None = None
        self._engines: dict[str, Any] = {}
        self._meter = QTimer(self)
        self._meter.setInterval(50)
        self._meter.timeout.connect(self._show_level)
        pane.ptt_button.press_started.connect(self.on_press)
        pane.ptt_button.press_ended.connect(self.on_release)

    @property
    def settings(self) -> Any:
        return self.pane.assistant.configs.app.voice

    def on_press(self) -> None:
        pane = self.pane
        if self.job is not None:  # barge-in: stop TARA speaking/thinking, then listen again
            self.job.cancel()
        elif pane.busy:
            pane.stop()
        if pane.assistant is None:
            pane.banner.show_info("TARA is still starting; try push-to-talk in a moment.")
            return
        try:
            allowed = bool(pane.assistant.profile.consent.get("record_voice"))
        except TaraError:
            allowed = False
        if not allowed:
            pane.banner.show_info("Voice is off. Allow “Use my microphone for push-to-talk” in Privacy to talk to TARA.")
            return
        try:
            from tara_desktop.voice.audio import Microphone

            mic = Microphone(self.settings.input_device, sample_rate=self.settings.sample_rate)
            mic.start()
        except TaraError as exc:
            pane.voice_state.set_state("idle")
            pane.banner.show_error(f"No microphone: {exc}")
            return
        except Exception as exc:  # PortAudio missing or broken: say so plainly
            pane.voice_state.set_state("idle")
            pane.banner.show_error(f"The microphone could not be opened ({type(exc).__name__}); "
                                   "check the sound settings and choose a device in Settings.")
            return
        self.mic = mic
        pane.banner.hide()
        pane.voice_state.set_state("listening")
        self._meter.start()

    def _show_level(self) -> None:
        if self.mic is not None:
            self.pane.level_meter.set_level(level_from_dbfs(self.mic.level_dbfs))

    def on_release(self) -> None:
        self._meter.stop()
        self.pane.level_meter.set_level(0.0)
        mic, self.mic = self.mic, None
        if mic is None:
            return
        audio = mic.stop()
        sr = mic.sample_rate
        if audio.size < MIN_SECONDS * sr:
            self.pane.voice_state.set_state("idle")
            self.pane.banner.show_info("Hold the button (or Ctrl+Space) while you speak, then let go.")
            return
        self.start_turn(audio, sr)

    def start_turn(self, audio: Any, sr: int) -> None:
        """Run one spoken turn on recorded audio (also used by tests with a WAV)."""
        pane = self.pane
        if self.job is not None:
            self.job.wait(10_000)
        assistant = pane.assistant
        settings = self.settings
        engines = self._engines
        box: dict[str, Any] = {}
        conversation_id = pane.conversation_id
        pin = pane.domain_box.currentData()
        override = pane.model_override

        def run(state: JobState, emit: Any) -> Any:
            from tara_desktop.assistant import TurnRequest
            from tara_desktop.voice.turn import run_voice_turn

            if not engines:
                from tara_desktop.voice.asr import SpeechRecognizer
                from tara_desktop.voice.emotion import EmotionDetector
                from tara_desktop.voice.tts import SpeechSynthesizer

                engines["asr"] = SpeechRecognizer.from_config(settings)
                engines["emotion"] = EmotionDetector.from_config(settings)
                engines["tts"] = SpeechSynthesizer.from_config(settings) if settings.speak_replies else None

            def respond(text: str, emotion: str, confidence: float, on_token: Any) -> str:
                try:  # the reply's voice is the domain's, chosen before the first sentence is spoken
                    domain = assistant.router.route(text, pinned=pin).domain
                    box["voice"] = assistant.router.voice_for(domain, emotion)
                except TaraError:
                    pass
                request = TurnRequest(text=text, conversation_id=conversation_id, emotion=emotion,
                                      emotion_confidence=confidence, pinned_domain=pin, model_path=override,
                                      source="voice")
                result = assistant.run_turn(request, state, on_token)
                box["result"] = result
                return str(result.reply)

            play = None
            if engines["tts"] is not None:
                from tara_desktop.voice.audio import Player

                play = Player().play
            out = run_voice_turn(audio, sr, asr=engines["asr"], emotion=engines["emotion"], respond=respond,
                                 tts=engines["tts"], play=play, state=state, on_event=emit,
                                 voice=lambda: box.get("voice"))
            return out, box.get("result")

        self.job = pane.jobs.start(run, "voice-turn")
        self.job.partial.connect(self._on_event)
        self.job.succeeded.connect(self._on_done)
        self.job.failed.connect(self._on_failed)
        self.job.done.connect(self._on_job_done)
        pane.begin_external_turn(self.job)

    def _on_event(self, event: object) -> None:
        kind = getattr(event, "kind", None)
        data = getattr(event, "data", None)
        pane = self.pane
        if kind == "state":
            pane.voice_state.set_state(str(data))
        elif kind == "transcript":
            text = str(getattr(data, "text", "")).strip()
            if text:
                pane.show_external_message(text)
        elif kind == "token":
            pane._on_token(data)
        elif kind == "error":
            pane.banner.show_info(f"Answering in text only: {data}")

    def _on_done(self, outcome: Any) -> None:
        voice, result = outcome
        if voice.heard_nothing:
            self.pane.banner.show_info("I didn't catch that — hold the button and speak a little closer.")
        if result is not None:
            meta_emotion = getattr(voice, "emotion", None)
            if meta_emotion and not getattr(result, "emotion", None):
                result.emotion = meta_emotion
            self.pane._on_turn_done(result)

    def _on_failed(self, message: str) -> None:
        self.pane._on_turn_failed(message)

    def _on_job_done(self) -> None:
        self.job = None
        self.pane.voice_state.set_state("idle")

    def shutdown(self) -> None:
        self._meter.stop()
        if self.mic is not None:
            try:
                self.mic.stop()
            except Exception:
                log.warning("microphone did not stop cleanly")
            self.mic = None
