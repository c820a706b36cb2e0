"""Push-to-talk wiring: microphone while held, then ``tara_desktop.voice.turn.run_voice_turn`` off the GUI thread.

The voice turn is plain Python; this object only opens the microphone on press, shows the level, and on
release runs the turn on a :class:`~tara_desktop.ui.workers.JobThread`. It hands the turn to the chat
model (:class:`~tara_desktop.ui.chat_model.ChatModel`), which the chat pane draws: the transcript, the
turn pipeline's events and the result go to the model's public methods. The reply is spoken in the voice
of the turn's own routing decision (its ``RouteEvent``): the message is routed once. Pressing again while
TARA speaks interrupts it (barge-in).
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

    def __init__(self, pane: Any, model: Any) -> None:
        super().__init__(pane)
        self.pane = pane  # its push-to-talk widgets, level meter, state indicator and banner
        self.model = model
        self._queued: tuple[Any, int] | None = None  # audio recorded while the previous turn was stopping
        self._waiting: Any = None
        self.mic: Any = None
        self.job: JobThread | None = None
        self._engines: dict[str, Any] = {}
        self._told_fallback = False
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
        elif self.model.busy:
            self.model.stop()
        if pane.assistant is None:
            pane.banner.show_info("TARA is still starting; try push-to-talk in a moment.")
            return
        # The microphone works without any consent; "record_voice" only decides whether recordings are kept.
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
        pane, model = self.pane, self.model
        if self.job is not None or model.busy:  # a barge-in: the turn was asked to stop; start once it has
            self._queued = (audio, sr)
            if self.job is not None:
                self.job.cancel()
            model.stop()
            if self._waiting is None:
                self._waiting = model.busy_changed
                model.busy_changed.connect(self._start_queued)
            return
        assistant = model.assistant
        settings = self.settings
        engines = self._engines
        box: dict[str, Any] = {}
        model.cancel_edit()
        template = model.request("-", source="voice")  # the conversation, pin and model of this turn

        def run(state: JobState, emit: Any) -> Any:
            from dataclasses import replace

            from tara_desktop.voice.turn import run_voice_turn

            if not engines:
                from tara_desktop.voice.asr import SpeechRecognizer
                from tara_desktop.voice.emotion import EmotionDetector
                from tara_desktop.voice.tts import SpeechSynthesizer

                engines["asr"] = SpeechRecognizer.from_config(settings)
                engines["emotion"] = EmotionDetector.from_config(settings)
                def online_allowed() -> bool:  # asked before every sentence: withdrawing acts on the next one
                    return bool(assistant.profile.consent.get("online_voice"))

                engines["tts"] = (SpeechSynthesizer.from_config(settings, online_allowed=online_allowed)
                                  if settings.speak_replies else None)

            def respond(text: str, emotion: str, confidence: float, on_token: Any) -> str:
                def on_event(event: Any) -> None:
                    if event.kind == "token":
                        on_token(event.text)  # the voice turn shows and speaks it
                        return
                    if event.kind == "route":  # the reply's voice is the turn's own domain's
                        box["voice"] = event.voice
                    emit(event)

                request = replace(template, text=text, emotion=emotion, emotion_confidence=confidence)
                result = assistant.turn(request, state, on_event)
                box["result"] = result
                return str(result.reply)

            play = None
            if engines["tts"] is not None:
                from tara_desktop.voice.audio import Player

                play = Player().play
            out = run_voice_turn(audio, sr, asr=engines["asr"], emotion=engines["emotion"], respond=respond,
                                 tts=engines["tts"], play=play, state=state, on_event=emit,
                                 voice=lambda: box.get("voice"))
            try:  # kept (encrypted, in the profile) only with the "record_voice" consent
                from tara_desktop.voice.recordings import keep_recording

                keep_recording(assistant.profile, audio, sr)
            except TaraError as exc:
                log.warning("the recording could not be kept (%s)", exc.__class__.__name__)
            return out, box.get("result")

        self.job = pane.jobs.start(run, "voice-turn")
        self.job.partial.connect(self._on_event)
        self.job.succeeded.connect(self._on_done)
        self.job.failed.connect(model.fail_turn)
        self.job.done.connect(self._on_job_done)
        model.begin_external_turn(self.job)

    def _on_event(self, event: object) -> None:
        kind = getattr(event, "kind", None)
        data = getattr(event, "data", None)
        pane, model = self.pane, self.model
        if kind == "state":
            pane.voice_state.set_state(str(data))
        elif kind == "transcript":
            text = str(getattr(data, "text", "")).strip()
            if text:
                model.show_user_message(text)
            reason = getattr(data, "fallback_reason", None)
            if reason and text and not self._told_fallback:  # say once which recogniser is in use, and why
                self._told_fallback = True
                pane.banner.show_info(f"Speech recognition is using {getattr(data, 'engine', '?')}: {reason}")
        elif kind == "token":
            model.apply_token(str(data))
        elif kind == "error":
            pane.banner.show_info(f"Answering in text only: {data}")
        elif kind in ("route", "window", "stored"):
            model.apply_event(event)

    def _on_done(self, outcome: Any) -> None:
        voice, result = outcome
        if voice.heard_nothing:
            from tara_desktop.voice.turn import HEARD_NOTHING_MESSAGE

            self.pane.banner.show_info(HEARD_NOTHING_MESSAGE)
        if result is not None:
            meta_emotion = getattr(voice, "emotion", None)
            if meta_emotion and not getattr(result, "emotion", None):
                result.emotion = meta_emotion
            for name, value in (("emotion_engine", voice.emotion_engine), ("asr_engine", voice.asr_engine)):
                if hasattr(result, name) and not getattr(result, name):
                    setattr(result, name, value)
            self.model.finish_turn(result)

    def _start_queued(self, busy: bool) -> None:
        if busy or self.job is not None or self._queued is None:
            return
        if self._waiting is not None:
            self._waiting.disconnect(self._start_queued)
            self._waiting = None
        (audio, sr), self._queued = self._queued, None
        self.start_turn(audio, sr)

    def _on_job_done(self) -> None:
        self.job = None
        self.pane.voice_state.set_state("idle")

    def shutdown(self) -> None:
        self._queued = None
        self._meter.stop()
        if self.mic is not None:
            try:
                self.mic.stop()
            except Exception:
                log.warning("microphone did not stop cleanly")
            self.mic = None
