"""``tara voice transcribe|say|turn``: the voice features without the GUI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tara_desktop.errors import TaraError


def register(subparsers: argparse._SubParsersAction) -> None:
    voice = subparsers.add_parser("voice", help="speech: transcribe a WAV, speak text, a whole spoken turn")
    sub = voice.add_subparsers(dest="voice_command", metavar="ACTION", parser_class=type(voice))
    voice.set_defaults(handler=lambda args: (voice.print_help(), 2)[1])

    p = sub.add_parser("transcribe", help="speech to text (+ emotion) from a WAV file")
    p.add_argument("wav", metavar="WAV", type=Path)
    p.add_argument("--json", action="store_true", help='print {"text","emotion","confidence","engine",...}')
    p.set_defaults(handler=cmd_transcribe)

    p = sub.add_parser("say", help="speak TEXT into a WAV file (the engine used is named on stderr)")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--out", metavar="WAV", type=Path, required=True)
    p.add_argument("--domain", help="use this domain's voice (default: general)")
    p.add_argument("--offline", action="store_true", help="do not try Edge TTS")
    p.set_defaults(handler=cmd_say)

    p = sub.add_parser("turn", help="a whole spoken turn from a WAV: transcribe, answer, speak the answer")
    p.add_argument("wav", metavar="WAV", type=Path)
    p.add_argument("--out", metavar="WAV", type=Path, required=True, help="where to write the spoken answer")
    p.add_argument("--json", action="store_true")
    p.add_argument("--model", type=Path, help="answer with this GGUF model")
    p.add_argument("--domain", help="pin the domain instead of routing")
    p.add_argument("--offline", action="store_true", help="do not try Edge TTS")
    p.set_defaults(handler=cmd_turn)


def _check_out(path: Path) -> None:
    if path.is_dir():
        raise TaraError(f"{path}: is a folder; give a file name ending in .wav")
    if not path.parent.exists():
        raise TaraError(f"{path.parent}: folder not found; create it or choose another --out path")


def _configs() -> Any:
    from tara_desktop.config import load_configs

    return load_configs()


def cmd_transcribe(args: argparse.Namespace) -> int:
    from tara_desktop.voice.asr import SpeechRecognizer
    from tara_desktop.voice.audio import prepare_speech, read_wav
    from tara_desktop.voice.emotion import EmotionDetector

    audio, sr = read_wav(args.wav)
    speech = prepare_speech(audio, sr)
    voice_settings = _configs().app.voice
    heard = SpeechRecognizer.from_config(voice_settings).transcribe(speech)
    felt = EmotionDetector.from_config(voice_settings).detect(speech, transcript=heard.text)
    if args.json:
        print(json.dumps({
            "text": heard.text, "emotion": felt.label, "confidence": round(felt.confidence, 4),
            "engine": heard.engine, "asr_confidence": round(heard.confidence, 4),
            "emotion_engine": felt.engine, "seconds": round(speech.seconds, 3),
        }))
    else:
        print(heard.text)
        sys.stderr.write(f"engine: {heard.engine}; emotion: {felt.label} ({felt.confidence:.2f}, {felt.engine})\n")
    return 0


def domain_voice(configs: Any, domain: str | None, emotion: str | None = None) -> str | None:
    """The Edge TTS voice for a domain: the router's choice when available, else the domain's config."""
    domain = domain or "general"
    if domain not in configs.domains:
        raise TaraError(f"unknown domain {domain!r}; choose one of {', '.join(sorted(configs.domains))}")
    try:
        from tara_desktop.routing.router import DomainRouter

        return str(DomainRouter.from_configs(configs).voice_for(domain, emotion))
    except (ImportError, AttributeError):
        return str(configs.domains[domain].voice)


def _speak_all(synth: Any, text: str, voice: str | None) -> tuple[Any, int, list[str]]:
    import numpy as np

    from tara_desktop.voice.audio import resample
    from tara_desktop.voice.sentences import split_sentences

    parts, engines, sr = [], [], 0
    for sentence in split_sentences([text]):
        spoken = synth.speak(sentence, voice)
        sr = sr or spoken.sample_rate
        parts.append(resample(spoken.audio, spoken.sample_rate, sr))
        parts.append(np.zeros(int(sr * 0.15), dtype=np.float32))
        engines.append(spoken.engine)
    return np.concatenate(parts[:-1]), sr, engines


def cmd_say(args: argparse.Namespace) -> int:
    from tara_desktop.voice.audio import write_wav
    from tara_desktop.voice.tts import SpeechSynthesizer, TtsError

    if not args.text.strip():
        raise TtsError("there is no text to speak; give some words")
    _check_out(args.out)
    configs = _configs()
    voice = domain_voice(configs, args.domain)
    synth = SpeechSynthesizer.from_config(configs.app.voice, use_edge=not args.offline)
    audio, sr, engines = _speak_all(synth, args.text, voice)
    write_wav(args.out, audio, sr)
    used = ", ".join(dict.fromkeys(engines))
    sys.stderr.write(f"engine: {used} ({audio.size / sr:.1f} s of speech written to {args.out})\n")
    return 0


def cmd_turn(args: argparse.Namespace) -> int:
    from tara_desktop.jobs import JobState
    from tara_desktop.voice.asr import SpeechRecognizer
    from tara_desktop.voice.audio import prepare_speech, read_wav, write_wav
    from tara_desktop.voice.emotion import EmotionDetector
    from tara_desktop.voice.tts import SpeechSynthesizer
    from tara_desktop.voice.turn import run_voice_turn

    audio, sr = read_wav(args.wav)
    speech = prepare_speech(audio, sr)
    _check_out(args.out)
    try:
        from tara_desktop.assistant import Assistant, TurnRequest
    except ImportError:
        raise TaraError(
            "the assistant (tara_desktop.assistant) is not available in this build; "
            "use `tara voice transcribe` and `tara chat` separately"
        ) from None

    configs = _configs()
    state = JobState()
    assistant = Assistant.open()
    turn: dict[str, Any] = {}
    voice_box: dict[str, str | None] = {"voice": domain_voice(configs, args.domain)}

    def respond(text: str, emotion: str, confidence: float, on_token: Any) -> str:
        def on_event(event: Any) -> None:
            if event.kind == "route" and event.voice:  # the turn's own routing picks the voice
                voice_box["voice"] = str(event.voice)
            elif event.kind == "token":
                on_token(event.text)

        request = TurnRequest(text=text, emotion=emotion, emotion_confidence=confidence,
                              pinned_domain=args.domain, model_path=args.model, source="voice")
        result = assistant.turn(request, state, on_event)
        turn["result"] = result
        return str(result.reply)

    try:
        synth = SpeechSynthesizer.from_config(configs.app.voice, use_edge=not args.offline)
        out = run_voice_turn(
            speech, speech.sample_rate,
            asr=SpeechRecognizer.from_config(configs.app.voice),
            emotion=EmotionDetector.from_config(configs.app.voice),
            respond=respond, tts=synth, state=state, voice=lambda: voice_box["voice"],
        )
    finally:
        close = getattr(assistant, "close", None)
        if callable(close):
            close()
    if out.heard_nothing:
        raise TaraError(f"{args.wav}: no speech was recognised; speak clearly and closer to the microphone")
    if out.tts_error and not out.spoken:
        raise TaraError(f"the answer could not be spoken ({out.tts_error})")
    reply_audio, reply_sr = out.reply_audio()
    write_wav(args.out, reply_audio, reply_sr)
    result = turn.get("result")
    engines = ", ".join(out.tts_engines)
    if args.json:
        print(json.dumps({
            "text": out.transcript, "emotion": out.emotion, "confidence": round(out.emotion_confidence, 4),
            "engine": out.asr_engine, "reply": out.reply,
            "domain": getattr(result, "domain", None), "tts_engine": engines,
            "out": str(args.out), "seconds": round(reply_audio.size / reply_sr, 3),
            "timings": {k: round(v, 4) for k, v in out.timings.items()},
        }))
    else:
        print(out.reply)
        sys.stderr.write(f"heard ({out.asr_engine}); emotion: {out.emotion}; speech: {engines} → {args.out}\n")
    return 0
