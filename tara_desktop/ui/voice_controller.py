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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QObject, QTimer, SignalInstance

from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.ui.workers import Emit, JobThread

if TYPE_CHECKING:
    from tara_desktop.config import VoiceSettings
    from tara_desktop.turn import TurnEvent, TurnResult
    from tara_desktop.ui.chat_model import ChatModel
    from tara_desktop.ui.chat_pane import ChatPane
    from tara_desktop.voice.asr import SpeechRecognizer
    from tara_desktop.voice.audio import Microphone
    from tara_desktop.voice.emotion import EmotionDetector
    from tara_desktop.voice.tts import SpeechSynthesizer
    from tara_desktop.voice.turn import VoiceEvent, VoiceTurnResult

log = logging.getLogger(__name__)

MIN_SECONDS = 0.3


def level_from_dbfs(dbfs: float) -> float:
    """Map -60..0 dBFS to 0..1 for the meter."""
    if not math.isfinite(dbfs):
        return 0.0
    return min(1.0, max(0.0, (dbfs + 60.0) / 60.0))


@dataclass
class VoiceEngines:
    """The recogniser, emotion detector and voice of the open profile, built once (cheap: models load on
    first use or in :meth:`VoiceController.prepare`)."""

    asr: SpeechRecognizer
    emotion: EmotionDetector
    tts: SpeechSynthesizer | None  # None when replies are not spoken

    @classmethod
    def build(cls, settings: VoiceSettings, online_allowed: Callable[[], bool]) -> VoiceEngines:
        from tara_desktop.voice.asr import SpeechRecognizer
        from tara_desktop.voice.emotion import EmotionDetector
        from tara_desktop.voice.tts import SpeechSynthesizer

        tts = SpeechSynthesizer.from_config(settings, online_allowed=online_allowed) if settings.speak_replies else None
        return cls(SpeechRecognizer.from_config(settings), EmotionDetector.from_config(settings), tts)


class VoiceController(QObject):
    """Connects a chat pane's push-to-talk controls to the voice engines."""

    def __init__(self, pane: ChatPane, model: ChatModel) -> None:
        super().__init__(pane)
        self.pane = pane  # its push-to-talk widgets, level meter, state indicator and banner
        self.model = model
        self._queued: tuple[npt.NDArray[np.float32], int] | None = None  # recorded while the last turn stopped
        self._waiting: SignalInstance | None = None
        self.mic: Microphone | None = None
        self.job: JobThread | None = None
        self._engines: VoiceEngines | None = None
        self._engines_for: tuple[object, VoiceSettings] | None = None  # the Assistant and settings they follow
        self._shut_down = False
        self._told_fallback = False
        self._meter = QTimer(self)
        self._meter.setInterval(50)
        self._meter.timeout.connect(self._show_level)
        pane.ptt_button.press_started.connect(self.on_press)
        pane.ptt_button.press_ended.connect(self.on_release)

    @property
    def settings(self) -> VoiceSettings:
        assistant = self.pane.assistant
        assert assistant is not None, "voice needs an open profile"
        return assistant.configs.app.voice

    def engines(self) -> VoiceEngines:
        """The voice engines, built on first use; the online voice is asked for consent before every
        sentence, so withdrawing it acts on the next one."""
        assistant = self.model.assistant
        assert assistant is not None, "voice needs an open profile"
        if self._shut_down:
            raise TaraError("the window is closing")
        settings = self.settings
        if self._engines is not None and self._engines_for != (assistant, settings):
            self._close_engines()  # another profile, or saved voice settings (Speak replies, a new model)
        if self._engines is None:
            profile = assistant.profile
            self._engines_for = (assistant, settings)

            def online_allowed() -> bool:
                return bool(profile.consent.get("online_voice"))

            self._engines = VoiceEngines.build(settings, online_allowed)
        return self._engines

    def prepare(self) -> None:
        """Start the offline voice (Piper's cold start, 1-8 s) in the background while the person is still
        speaking, so the first spoken reply does not wait for it; called on every press, it does the work
        once. People who only type never start Piper. Returns at once."""
        if self.model.assistant is None or self.job is not None or self._shut_down:
            return
        try:
            tts = self.engines().tts
        except TaraError as exc:
            log.warning("the voice engines could not be prepared (%s)", exc.__class__.__name__)
            return
        if tts is not None:
            tts.warm_up()

    def on_press(self) -> None:
        pane = self.pane
        if self.job is not None:  # barge-in: stop TARA speaking/thinking, then listen again
            self.job.cancel()
        elif self.model.busy:
            self.model.stop()
        if pane.assistant is None:
            pane.banner.show_info("TARA is still starting; try push-to-talk in a moment.")
            return
        self.prepare()
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

    def start_turn(self, audio: npt.NDArray[np.float32], sr: int) -> None:
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
        assert assistant is not None, "a voice turn needs an open profile"
        try:
            engines = self.engines()
        except TaraError as exc:
            pane.voice_state.set_state("idle")
            pane.banner.show_error(f"Voice is not available: {exc}")
            return
        box: dict[str, object] = {}
        model.cancel_edit()
        template = model.request("-", source="voice")  # the conversation, pin and model of this turn

        def run(state: JobState, emit: Emit) -> tuple[VoiceTurnResult, TurnResult | None]:
            from dataclasses import replace

            from tara_desktop.voice.emotion import EmotionResult
            from tara_desktop.voice.turn import run_voice_turn

            result: list[TurnResult] = []

            def respond(text: str, emotion: str, confidence: float, on_token: Callable[[str], None]) -> str:
                def on_event(event: TurnEvent) -> None:
                    if event.kind == "token":
                        on_token(event.text)  # the voice turn shows and speaks it
                        return
                    if event.kind == "route":  # the reply's voice is the turn's own domain's
                        box["voice"] = event.voice
                    emit(event)

                meta = dict(template.meta or {})
                heard = box.get("emotion")
                if isinstance(heard, EmotionResult):  # kept on the user message: a reload still says it
                    meta["emotion_engine"] = heard.engine
                request = replace(template, text=text, emotion=emotion, emotion_confidence=confidence,
                                  meta=meta or None)
                result.append(assistant.turn(request, state, on_event))
                return result[-1].reply

            play = None
            if engines.tts is not None:
                from tara_desktop.voice.audio import Player

                play = Player().play

            def on_voice_event(event: VoiceEvent) -> None:
                if event.kind == "emotion":  # comes before respond() is called
                    box["emotion"] = event.data
                emit(event)

            def voice() -> str | None:
                chosen = box.get("voice")
                return chosen if isinstance(chosen, str) else None

            out = run_voice_turn(audio, sr, asr=engines.asr, emotion=engines.emotion, respond=respond,
                                 tts=engines.tts, play=play, state=state, on_event=on_voice_event,
                                 voice=voice)
            try:  # kept (encrypted, in the profile) only with the "record_voice" consent
                from tara_desktop.voice.recordings import keep_recording

                keep_recording(assistant.profile, audio, sr)
            except TaraError as exc:
                log.warning("the recording could not be kept (%s)", exc.__class__.__name__)
            return out, (result[-1] if result else None)

        self.job = pane.jobs.start(run, "voice-turn")
        self.job.partial.connect(self._on_event)
        self.job.succeeded.connect(self._on_done)
        self.job.failed.connect(model.fail_turn)
        self.job.done.connect(self._on_job_done)
        model.begin_external_turn(self.job)

    def _on_event(self, event: VoiceEvent | TurnEvent) -> None:
        from tara_desktop.voice.asr import AsrResult
        from tara_desktop.voice.turn import VoiceEvent

        pane, model = self.pane, self.model
        if not isinstance(event, VoiceEvent):  # the turn pipeline's route, window and stored events
            model.apply_event(event)
            return
        data = event.data
        if event.kind == "state":
            pane.voice_state.set_state(str(data))
        elif event.kind == "transcript" and isinstance(data, AsrResult):
            text = data.text.strip()
            if text:
                model.show_user_message(text)
            if data.fallback_reason and text and not self._told_fallback:  # say once which recogniser, why
                self._told_fallback = True
                pane.banner.show_info(f"Speech recognition is using {data.engine}: {data.fallback_reason}")
        elif event.kind == "token":
            model.apply_token(str(data))
        elif event.kind == "error":
            pane.banner.show_info(f"Answering in text only: {data}")

    def _on_done(self, outcome: tuple[VoiceTurnResult, TurnResult | None]) -> None:
        voice, result = outcome
        if voice.heard_nothing:
            from tara_desktop.voice.turn import HEARD_NOTHING_MESSAGE

            self.pane.banner.show_info(HEARD_NOTHING_MESSAGE)
        if result is not None:
            if voice.emotion and not result.emotion:
                result.emotion = voice.emotion
            self.model.finish_turn(result, emotion_engine=voice.emotion_engine)

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

    def _close_engines(self) -> None:
        engines, self._engines, self._engines_for = self._engines, None, None
        if engines is not None and engines.tts is not None:
            engines.tts.close()  # the Piper process ends with the window (or the profile)

    def reset_engines(self) -> None:
        """A voice model was installed: the next spoken turn builds its engines afresh and uses it (a turn
        running now keeps the engines it has)."""
        if self.job is None:
            self._close_engines()
        else:
            self._engines_for = None  # rebuilt at the next turn's start

    def close_engines(self) -> None:
        """After the window's jobs have stopped: end the Piper process."""
        self._close_engines()

    def shutdown(self) -> None:
        """The window is closing: stop listening, start nothing new (the engines close in
        :meth:`close_engines`, once the running turn has stopped)."""
        self._shut_down = True
        self._queued = None
        self._meter.stop()
        if self.mic is not None:
            try:
                self.mic.stop()
            except Exception:
                log.warning("microphone did not stop cleanly")
            self.mic = None
