"""``tara voice transcribe|say|turn|models|download|install-base``: the voice features without the GUI."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tara_desktop.errors import TaraError
from tara_desktop.progress import ProgressBar

if TYPE_CHECKING:
    from tara_desktop.config import Configs, VoiceSettings
    from tara_desktop.jobs import JobState
    from tara_desktop.turn import TurnEvent, TurnResult


def register(subparsers: argparse._SubParsersAction) -> None:
    voice = subparsers.add_parser("voice", help="speech: transcribe a WAV, speak text, a whole spoken turn")
    sub = voice.add_subparsers(dest="voice_command", metavar="ACTION", parser_class=type(voice))
    voice.set_defaults(handler=lambda args: (voice.print_help(), 2)[1])

    p = sub.add_parser("transcribe", help="speech to text (+ emotion) from an audio file of any length")
    p.add_argument("wav", metavar="WAV", type=Path)
    p.add_argument("--json", action="store_true", help='print {"text","emotion","confidence","engine",...}')
    p.set_defaults(handler=cmd_transcribe)

    p = sub.add_parser("models", help="voice models: bundled, installed and downloadable (with sizes)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("download", help="download a SpeechBrain voice model from the catalog (resumable)")
    p.add_argument("model_id", metavar="ID")
    p.set_defaults(handler=cmd_download)

    p = sub.add_parser("install-base", help="install the optional multilingual Whisper base model")
    p.set_defaults(handler=cmd_install_base)

    p = sub.add_parser("say", help="speak TEXT into a WAV file (the engine used is named on stderr)")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--out", metavar="WAV", type=Path, required=True)
    p.add_argument("--domain", help="use this domain's voice (default: general)")
    p.add_argument("--offline", action="store_true", help="never use the online voice, even with consent")
    p.set_defaults(handler=cmd_say)

    p = sub.add_parser("turn", help="a whole spoken turn from a WAV: transcribe, answer, speak the answer")
    p.add_argument("wav", metavar="WAV", type=Path)
    p.add_argument("--out", metavar="WAV", type=Path, required=True, help="where to write the spoken answer")
    p.add_argument("--json", action="store_true")
    p.add_argument("--model", type=Path, help="answer with this GGUF model")
    p.add_argument("--domain", help="pin the domain instead of routing")
    p.add_argument("--offline", action="store_true", help="never use the online voice, even with consent")
    p.set_defaults(handler=cmd_turn)


def _check_out(path: Path) -> None:
    if path.is_dir():
        raise TaraError(f"{path}: is a folder; give a file name ending in .wav")
    if not path.parent.exists():
        raise TaraError(f"{path.parent}: folder not found; create it or choose another --out path")


def _configs() -> Configs:
    from tara_desktop.config import load_configs

    return load_configs()


def _seconds(path: Path) -> float:
    """The length of an audio file from its header (0 when unknown)."""
    try:
        import soundfile as sf

        info = sf.info(str(path))
        return float(info.frames) / float(info.samplerate) if info.samplerate else 0.0
    except Exception:
        return 0.0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from tara_desktop.jobs import JobState
    from tara_desktop.voice.asr import (
        FILE_CHUNK_SECONDS,
        SpeechRecognizer,
        iter_speech_chunks,
        transcribe_file,
    )
    from tara_desktop.voice.emotion import EmotionDetector

    voice_settings = _configs().app.voice
    recognizer = SpeechRecognizer.from_config(voice_settings)
    bar = ProgressBar()
    state = JobState(bar if _seconds(args.wav) > FILE_CHUNK_SECONDS else None)  # progress for long files only
    try:
        heard = transcribe_file(args.wav, recognizer=recognizer, state=state)
    except KeyboardInterrupt:
        bar.end()
        raise TaraError("transcription cancelled") from None
    finally:
        bar.end()
    # Emotion from the first chunk (the voice's tone in the first minute) and the words.
    first = next(iter(iter_speech_chunks(args.wav, FILE_CHUNK_SECONDS)))[0]
    felt = EmotionDetector.from_config(voice_settings).detect(first, transcript=heard.text[:2000])
    if args.json:
        print(json.dumps({
            "text": heard.text, "emotion": felt.label, "confidence": round(felt.confidence, 4),
            "engine": heard.engine, "model": heard.model, "language": heard.language,
            "asr_confidence": round(heard.confidence, 4), "emotion_engine": felt.engine,
            "emotion_model": felt.model, "tone": felt.tone, "heard_nothing": heard.heard_nothing,
            "fallback_reason": heard.fallback_reason, "seconds": round(heard.seconds, 3),
        }))
    else:
        print(heard.text)
        model = f" ({heard.model})" if heard.model else ""
        sys.stderr.write(f"engine: {heard.engine}{model}; emotion: {felt.label} ({felt.confidence:.2f}, {felt.engine})\n")
    if heard.heard_nothing:
        sys.stderr.write(f"I heard nothing in {args.wav}: no speech was found\n")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from tara_desktop.voice.models import voice_models_status

    rows = voice_models_status()
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        size = f"~{row['size_mb']} MB" if row["size_mb"] else "size not recorded"
        where = f"installed: {row['path']}" if row["installed"] else (
            "bundled (missing: reinstall)" if row["bundled"] else "not installed")
        print(f"{row['id']:<52} {row['kind']:<8} {row['engine']:<15} {size:<18} {where}")
        files = row["files"]
        assert isinstance(files, list)
        names = ", ".join(
            f"{f['name']}" + (f" ({f['size_bytes']} B)" if f["size_bytes"] else
                              f" (~{f['approx_size_mb']} MB)" if f["approx_size_mb"] else "")
            for f in files)
        print(f"    files: {names}")
    return 0


def _with_progress(job: Callable[[JobState], Path], cancelled: str) -> Path:
    """Run a long job with a progress bar on a terminal; Ctrl+C becomes one ``error:`` line (``cancelled``)."""
    from tara_desktop.jobs import JobState

    bar = ProgressBar()
    try:
        return job(JobState(bar.on_terminal()))
    except KeyboardInterrupt:
        raise TaraError(cancelled) from None
    finally:
        bar.end()


def cmd_download(args: argparse.Namespace) -> int:
    from tara_desktop.voice.models import download_voice_model

    folder = _with_progress(lambda state: download_voice_model(args.model_id, state=state),
                            "download cancelled; run the same command again to resume")
    print(f"downloaded {args.model_id} to {folder}")
    return 0


def cmd_install_base(args: argparse.Namespace) -> int:
    from tara_desktop.voice.models import install_whisper_base

    folder = _with_progress(lambda state: install_whisper_base(state=state),
                            "installation cancelled; nothing was kept, run the command again")
    print(f"Whisper base is installed in {folder}; voice.asr_model auto now uses it")
    return 0


def online_voice_allowed(voice_settings: VoiceSettings) -> bool:
    """True only when the profile's "online_voice" consent is on (and voice.tts_engine allows an online
    voice); a profile that cannot be opened counts as "no"."""
    if voice_settings.tts_engine not in ("auto", "edge"):
        return False
    try:
        from tara_desktop.profile import Profile

        profile = Profile.open(create=False)  # no profile yet: nobody consented
    except Exception:
        return False
    try:
        return bool(profile.consent.get("online_voice"))
    except Exception:
        return False
    finally:
        profile.close()


def domain_voice(configs: Configs, domain: str | None, emotion: str | None = None) -> str:
    """The Edge TTS voice for a domain, as the router chooses it (the domain's voice, or its calm voice
    for a distressed emotion)."""
    from tara_desktop.routing.router import DomainRouter

    domain = domain or "general"
    if domain not in configs.domains:
        raise TaraError(f"unknown domain {domain!r}; choose one of {', '.join(sorted(configs.domains))}")
    return DomainRouter.from_configs(configs).voice_for(domain, emotion)


def cmd_say(args: argparse.Namespace) -> int:
    from tara_desktop.voice.audio import write_wav
    from tara_desktop.voice.tts import SpeechSynthesizer, TtsError, speak_text

    if not args.text.strip():
        raise TtsError("there is no text to speak; give some words")
    _check_out(args.out)
    configs = _configs()
    voice = domain_voice(configs, args.domain)
    allowed = False if args.offline else online_voice_allowed(configs.app.voice)
    synth = SpeechSynthesizer.from_config(configs.app.voice, use_edge=allowed, online_allowed=lambda: allowed)
    spoken = speak_text(synth, args.text, voice)
    write_wav(args.out, spoken.audio, spoken.sample_rate)
    sys.stderr.write(f"engine: {spoken.engine} ({spoken.seconds:.1f} s of speech written to {args.out})\n")
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
    from tara_desktop.assistant import Assistant
    from tara_desktop.turn import TurnRequest

    configs = _configs()
    state = JobState()
    assistant = Assistant.open()
    turn: dict[str, TurnResult] = {}
    voice_box: dict[str, str | None] = {"voice": domain_voice(configs, args.domain)}

    def respond(text: str, emotion: str, confidence: float, on_token: Callable[[str], None]) -> str:
        def on_event(event: TurnEvent) -> None:
            if event.kind == "route" and event.voice:  # the turn's own routing picks the voice
                voice_box["voice"] = event.voice
            elif event.kind == "token":
                on_token(event.text)

        request = TurnRequest(text=text, emotion=emotion, emotion_confidence=confidence,
                              pinned_domain=args.domain, model_path=args.model, source="voice")
        result = assistant.turn(request, state, on_event)
        turn["result"] = result
        return result.reply

    try:
        allowed = False if args.offline else online_voice_allowed(configs.app.voice)
        synth = SpeechSynthesizer.from_config(configs.app.voice, use_edge=allowed, online_allowed=lambda: allowed)
        out = run_voice_turn(
            speech, speech.sample_rate,
            asr=SpeechRecognizer.from_config(configs.app.voice),
            emotion=EmotionDetector.from_config(configs.app.voice),
            respond=respond, tts=synth, state=state, voice=lambda: voice_box["voice"],
        )
    finally:
        assistant.close()
    if out.heard_nothing:
        raise TaraError(f"{args.wav}: I heard nothing (no speech was recognised); speak clearly and closer to the microphone")
    if out.tts_error and not out.spoken:
        raise TaraError(f"the answer could not be spoken ({out.tts_error})")
    reply_audio, reply_sr = out.reply_audio()
    write_wav(args.out, reply_audio, reply_sr)
    result = turn.get("result")
    engines = ", ".join(out.tts_engines)
    if args.json:
        print(json.dumps({
            "text": out.transcript, "emotion": out.emotion, "confidence": round(out.emotion_confidence, 4),
            "engine": out.asr_engine, "model": out.asr_model, "emotion_engine": out.emotion_engine,
            "tone": out.emotion_tone, "reply": out.reply,
            "domain": result.domain if result is not None else None, "tts_engine": engines,
            "out": str(args.out), "seconds": round(reply_audio.size / reply_sr, 3),
            "timings": {k: round(v, 4) for k, v in out.timings.items()},
        }))
    else:
        print(out.reply)
        sys.stderr.write(f"heard ({out.asr_engine}); emotion: {out.emotion}; speech: {engines} → {args.out}\n")
    return 0
