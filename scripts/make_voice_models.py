#!/usr/bin/env python3
"""Build TARA's tiny demo SpeechBrain models from synthetic espeak-ng speech.

No pretrained SpeechBrain weights can be downloaded on the build machines, so this script trains two tiny,
real SpeechBrain models and saves them in SpeechBrain's pretrained-folder format:

* ``models/voice/asr``: a character CTC model (Fbank → Conv1d → BiGRU → linear) that recognises a fixed set
  of short English phrases (commands and questions for each domain). Load it with
  ``speechbrain.inference.ASR.EncoderASR.from_hparams(source=<folder>, savedir=<folder>)``.
* ``models/voice/emotion``: a DEMO speech-emotion classifier (x-vector TDNN) that tells apart espeak-ng
  prosody styles that stand in for emotions: fast and high = happy, fast, loud and low = angry, slow and low
  = sad, medium = neutral. It knows nothing about real human emotion; it exists so that the real loading and
  inference path is exercised. Load it with ``speechbrain.inference.classifiers.EncoderClassifier``.

Both are deterministic (fixed seeds, fixed voices) and train in a minute or two on 2 CPU cores.

    .venv/bin/python scripts/make_voice_models.py [--out models/voice] [--only asr|emotion] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SR = 16_000

# The phrases the demo ASR knows. Several route to each domain; a few are app commands and emotional lines.
PHRASES: tuple[str, ...] = (
    "what could cause a headache",
    "how can i lower my blood pressure",
    "how much sleep does an adult need",
    "how do i write a business plan",
    "how should i price my product",
    "explain cash flow to me",
    "can you explain photosynthesis",
    "how do i solve quadratic equations",
    "help me prepare for my exams",
    "write a short poem about the sea",
    "suggest a name for my band",
    "give me ideas for a fantasy novel",
    "how do i give feedback to my team",
    "what makes a good manager",
    "how do i delegate work",
    "how do i reverse a list in python",
    "how do i fix a merge conflict in git",
    "what is the difference between tcp and udp",
    "hello how are you today",
    "tell me a fun fact",
    "what should i cook for dinner",
    "thank you that was helpful",
    "what time zone is tokyo in",
    "stop talking",
    "start a new conversation",
    "open the settings",
    "i feel really sad today",
    "this is wonderful news",
    "i am so angry right now",
    "read that again please",
)

# espeak-ng renderings used for training: (voice, words per minute, pitch 0-99).
# Held out for tests (never trained on): voice en-gb-x-rp and variants m7, f3, f5.
ASR_TRAIN_VOICES: tuple[tuple[str, int, int], ...] = (
    ("en-us", 150, 50), ("en-us+m3", 175, 40), ("en-us+f2", 140, 65), ("en-us+f4", 165, 55),
    ("en-gb", 160, 45), ("en-gb+m1", 135, 35), ("en-gb+f1", 180, 70), ("en-gb+m4", 150, 55),
    ("en-029", 155, 50), ("en-gb-scotland+m2", 145, 45), ("en-gb-x-gbclan+f2", 170, 60),
    ("en-us+m6", 190, 50), ("en-us+m2", 125, 45), ("en-gb-x-gbcwmd+f4", 150, 65),
    ("en-us+m1", 160, 48), ("en-gb+m5", 150, 40), ("en-us+m8", 165, 55), ("en-gb+f2", 155, 62),
    ("en-029+f4", 145, 66), ("en-us+klatt", 150, 50), ("en-gb-x-gbclan+m6", 170, 45), ("en-us+f1", 185, 72),
)
CHARS = list("abcdefghijklmnopqrstuvwxyz' ")

# Emotion styles: (label, wpm range, pitch range, amplitude range).
EMOTION_STYLES: dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]] = {
    "neutral": ((150, 165), (45, 55), (95, 110)),
    "happy": ((185, 215), (75, 95), (120, 150)),
    "sad": ((95, 120), (15, 30), (50, 75)),
    "angry": ((180, 210), (25, 40), (170, 200)),
}
# (Sixteen voices with 64 utterances per label did worse on held-out voices: happy swallowed angry/neutral.)
EMOTION_VOICES = ("en-us", "en-gb", "en-us+m3", "en-us+f2", "en-gb+f1", "en-gb+m4", "en-029", "en-us+m2")


# ---- speech ---------------------------------------------------------------------------------------------
def espeak(text: str, voice: str, wpm: int, pitch: int, amplitude: int = 100) -> np.ndarray:
    """Render text with espeak-ng to 16 kHz mono float32 (in memory, no files)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("error: espeak-ng is not installed; run scripts/setup (or apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        subprocess.run([exe, "-v", voice, "-s", str(wpm), "-p", str(pitch), "-a", str(amplitude),
                        "-w", str(out), text], check=True, capture_output=True)
        data, sr = sf.read(str(out), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if sr != SR:
        g = math.gcd(sr, SR)
        mono = resample_poly(mono, SR // g, sr // g)
    return np.asarray(mono, dtype=np.float32)


def _band_limit(wav: np.ndarray) -> np.ndarray:
    """The same audio as if recorded at 8 kHz (nothing above 4 kHz)."""
    from scipy.signal import resample_poly

    return np.asarray(resample_poly(resample_poly(wav, 1, 2), 2, 1)[: wav.size], dtype=np.float32)


def _render_all(jobs: Sequence[tuple[str, str, int, int] | tuple[str, str, int, int, int]]) -> list[np.ndarray]:
    """Render many utterances with a few espeak-ng processes at a time (order kept, so deterministic)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda job: espeak(*job), jobs))


def _batch(wavs: Sequence[np.ndarray]) -> tuple[Any, Any]:
    import torch

    n = max(w.size for w in wavs)
    out = torch.zeros(len(wavs), n)
    lens = torch.zeros(len(wavs))
    for i, w in enumerate(wavs):
        out[i, : w.size] = torch.from_numpy(w)
        lens[i] = w.size / n
    return out, lens


# ---- ASR -------------------------------------------------------------------------------------------------
ASR_YAML = """\
# TARA demo ASR: tiny character CTC model trained on espeak-ng speech of a fixed phrase set
# (built by scripts/make_voice_models.py; see phrases.json). Load with
# speechbrain.inference.ASR.EncoderASR.from_hparams(source=<this folder>, savedir=<this folder>).
sample_rate: 16000
n_mels: 40
channels: {ch}
output_neurons: {n_out}
blank_index: 0

compute_features: !new:speechbrain.lobes.features.Fbank
    sample_rate: !ref <sample_rate>
    n_mels: !ref <n_mels>

normalize: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence

cnn1: !new:speechbrain.nnet.CNN.Conv1d
    in_channels: !ref <n_mels>
    out_channels: !ref <channels>
    kernel_size: 5
    stride: 2
act1: !new:torch.nn.LeakyReLU
norm1: !new:speechbrain.nnet.normalization.LayerNorm
    input_size: !ref <channels>
cnn2: !new:speechbrain.nnet.CNN.Conv1d
    in_channels: !ref <channels>
    out_channels: !ref <channels>
    kernel_size: 5
    dilation: 2
act2: !new:torch.nn.LeakyReLU
norm2: !new:speechbrain.nnet.normalization.LayerNorm
    input_size: !ref <channels>
cnn3: !new:speechbrain.nnet.CNN.Conv1d
    in_channels: !ref <channels>
    out_channels: !ref <channels>
    kernel_size: 5
    dilation: 4
act3: !new:torch.nn.LeakyReLU
norm3: !new:speechbrain.nnet.normalization.LayerNorm
    input_size: !ref <channels>
cnn4: !new:speechbrain.nnet.CNN.Conv1d
    in_channels: !ref <channels>
    out_channels: !ref <channels>
    kernel_size: 3
act4: !new:torch.nn.LeakyReLU

lin: !new:speechbrain.nnet.linear.Linear
    input_size: !ref <channels>
    n_neurons: !ref <output_neurons>

log_softmax: !new:speechbrain.nnet.activations.Softmax
    apply_log: True

encoder: !new:speechbrain.nnet.containers.LengthsCapableSequential
    compute_features: !ref <compute_features>
    normalize: !ref <normalize>
    cnn1: !ref <cnn1>
    act1: !ref <act1>
    norm1: !ref <norm1>
    cnn2: !ref <cnn2>
    act2: !ref <act2>
    norm2: !ref <norm2>
    cnn3: !ref <cnn3>
    act3: !ref <act3>
    norm3: !ref <norm3>
    cnn4: !ref <cnn4>
    act4: !ref <act4>
    lin: !ref <lin>
    log_softmax: !ref <log_softmax>

tokenizer: !new:speechbrain.dataio.encoder.CTCTextEncoder

decoding_function: !name:speechbrain.decoders.ctc_greedy_decode
    blank_id: !ref <blank_index>

modules:
    encoder: !ref <encoder>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <encoder>
        tokenizer: !ref <tokenizer>
"""

ASR_BODY = ("cnn1", "act1", "norm1", "cnn2", "act2", "norm2", "cnn3", "act3", "norm3", "cnn4", "act4", "lin")


def _asr_sizes() -> dict[str, int]:
    return {"ch": 96, "n_out": len(CHARS) + 1}


def _asr_body(encoder: Any, x: Any) -> Any:
    """The encoder after its (fixed) feature layers: features → per-frame character log-probabilities."""
    for name in ASR_BODY:
        x = getattr(encoder, name)(x)
    return encoder.log_softmax(x)


def build_asr(out_dir: Path, *, epochs: int = 28, seed: int = 0, log: bool = True,
              phrases: Sequence[str] = PHRASES,
              voices: Sequence[tuple[str, int, int]] = ASR_TRAIN_VOICES) -> Path:
    """Train the demo ASR and write its pretrained folder to ``out_dir`` (``phrases``/``voices`` smaller
    than the defaults only for quick checks of this script)."""
    import torch
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.encoder import CTCTextEncoder

    t0 = time.time()
    _seed_everything(seed)
    sizes = _asr_sizes()
    yaml_text = ASR_YAML.format(**sizes)
    hp = load_hyperpyyaml(yaml_text)
    encoder = hp["encoder"]

    tokenizer: CTCTextEncoder = hp["tokenizer"]
    tokenizer.insert_blank(index=0)
    tokenizer.update_from_iterable(CHARS, sequence_input=False)
    tokenizer.expect_len(len(CHARS) + 1)
    blank = tokenizer.get_blank_index()
    assert blank == 0

    # Data: every phrase in every training voice, plus a noisy copy of each.
    rng = np.random.default_rng(seed)
    items: list[tuple[np.ndarray, list[int]]] = []
    jobs = [(text, voice, wpm, pitch) for text in phrases for voice, wpm, pitch in voices]
    rendered = _render_all(jobs)
    for (text, _, _, _), clean in zip(jobs, rendered, strict=True):
        labels = [int(i) for i in tokenizer.encode_sequence(list(text))]
        # Some telephone-band copies (8 kHz microphones and headsets), all with a random level and noise.
        wav = _band_limit(clean) if rng.uniform() < 0.3 else clean
        noisy = wav * rng.uniform(0.3, 1.0) + rng.normal(0, rng.uniform(0, 0.004), wav.size)
        items.append((noisy.astype(np.float32), labels))
    if log:
        print(f"[asr] {len(items)} utterances rendered in {time.time() - t0:.1f}s", flush=True)

    # Features once (Fbank + sentence normalisation are fixed); train the layers after them.
    feats: list[Any] = []
    with torch.no_grad():
        for wav, _ in items:
            f = encoder.compute_features(torch.from_numpy(wav)[None])
            feats.append(encoder.normalize(f, torch.ones(1))[0])

    trainable = torch.nn.ModuleList([getattr(encoder, n) for n in ASR_BODY])
    opt = torch.optim.AdamW(trainable.parameters(), lr=3e-3, weight_decay=1e-4)
    order = list(range(len(items)))
    batch_size = 24
    steps_per_epoch = (len(order) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    py_rng = random.Random(seed)
    for epoch in range(epochs):
        py_rng.shuffle(order)
        total = 0.0
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            x, lens = _pad([feats[i] for i in idx])
            x = _spec_augment(x, py_rng)
            trainable.train()
            logp = _asr_body(encoder, x)
            t_out = logp.shape[1]
            in_lens = torch.clamp(torch.round(lens * t_out).long(), min=1, max=t_out)
            targets = [torch.tensor(items[i][1]) for i in idx]
            tgt = torch.cat(targets)
            tgt_lens = torch.tensor([len(t) for t in targets])
            loss = torch.nn.functional.ctc_loss(logp.transpose(0, 1), tgt, in_lens, tgt_lens, blank=blank,
                                                zero_infinity=True)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable.parameters(), 5.0)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if log:
            print(f"[asr] epoch {epoch + 1}/{epochs} ctc loss {total / len(order):.3f} "
                  f"({time.time() - t0:.0f}s)", flush=True)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "hyperparams.yaml").write_text(yaml_text, encoding="utf-8")
    torch.save(encoder.state_dict(), out_dir / "encoder.ckpt")
    tokenizer.save(out_dir / "tokenizer.ckpt")
    (out_dir / "phrases.json").write_text(json.dumps(
        {"phrases": list(phrases), "train_voices": [list(v) for v in voices],
         "seed": seed, "epochs": epochs, "note": "demo model: recognises only these phrases"},
        indent=1), encoding="utf-8")
    if log:
        print(f"[asr] wrote {out_dir} in {time.time() - t0:.0f}s", flush=True)
    return out_dir


def evaluate_asr(folder: Path, voices: Sequence[tuple[str, int, int]] = (("en-gb-x-rp", 158, 52),
                 ("en-us+m7", 148, 45), ("en-us+f3", 172, 60), ("en-gb+f5", 140, 58))) -> float:
    """Fraction of phrases transcribed exactly in voices never trained on (loads the saved folder)."""
    import torch
    from speechbrain.inference.ASR import EncoderASR
    from speechbrain.utils.fetching import LocalStrategy

    asr = EncoderASR.from_hparams(source=str(folder), savedir=str(folder), local_strategy=LocalStrategy.NO_LINK)
    exact = 0
    for i, text in enumerate(PHRASES):
        voice, wpm, pitch = voices[i % len(voices)]
        wav = torch.from_numpy(espeak(text, voice, wpm, pitch))[None]
        hyp = asr.transcribe_batch(wav, torch.ones(1))[0][0]
        exact += hyp == text
        if hyp != text:
            print(f"[asr eval] {voice}: {text!r} -> {hyp!r}", flush=True)
    print(f"[asr eval] {exact}/{len(PHRASES)} exact on unseen voices", flush=True)
    return exact / len(PHRASES)


def _pad(feats: Sequence[Any]) -> tuple[Any, Any]:
    import torch

    n = max(f.shape[0] for f in feats)
    x = torch.zeros(len(feats), n, feats[0].shape[1])
    lens = torch.zeros(len(feats))
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = f
        lens[i] = f.shape[0] / n
    return x, lens


def _spec_augment(x: Any, rng: random.Random) -> Any:
    x = x.clone()
    for i in range(x.shape[0]):
        f0 = rng.randrange(0, x.shape[2] - 6)
        x[i, :, f0 : f0 + rng.randrange(0, 6)] = 0
        t0 = rng.randrange(0, max(1, x.shape[1] - 10))
        x[i, t0 : t0 + rng.randrange(0, 10), :] = 0
    return x


# ---- emotion ---------------------------------------------------------------------------------------------
EMOTION_YAML = """\
# TARA DEMO speech-emotion classifier (built by scripts/make_voice_models.py). It was trained only on
# espeak-ng speech whose speed/pitch/loudness stand in for emotions (fast+high = happy, fast+loud+low = angry,
# slow+low+quiet = sad, medium = neutral). It is NOT a model of real human emotion. Load with
# speechbrain.inference.classifiers.EncoderClassifier.from_hparams(source=<this folder>, savedir=<this folder>).
sample_rate: 16000
n_mels: 40
emb_dim: {emb}

compute_features: !new:speechbrain.lobes.features.Fbank
    sample_rate: !ref <sample_rate>
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.Xvector.Xvector
    in_channels: !ref <n_mels>
    tdnn_blocks: 3
    tdnn_channels: [{ch}, {ch}, {ch2}]
    tdnn_kernel_sizes: [5, 3, 1]
    tdnn_dilations: [1, 2, 1]
    lin_neurons: !ref <emb_dim>

classifier: !new:speechbrain.lobes.models.Xvector.Classifier
    input_shape: [null, null, !ref <emb_dim>]
    lin_blocks: 1
    lin_neurons: !ref <emb_dim>
    out_neurons: {n_out}

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
"""
EMOTION_LABELS = ("neutral", "happy", "sad", "angry")


def emotion_renderings(label: str, n: int, seed: int, voices: Sequence[str] = EMOTION_VOICES
                       ) -> list[np.ndarray]:
    """``n`` espeak-ng utterances in the prosody style standing in for ``label``."""
    (w0, w1), (p0, p1), (a0, a1) = EMOTION_STYLES[label]
    rng = random.Random(f"{seed}-{label}")
    jobs = []
    for i in range(n):
        text = PHRASES[rng.randrange(len(PHRASES))]
        voice = voices[i % len(voices)]
        jobs.append((text, voice, rng.randint(w0, w1), rng.randint(p0, p1), rng.randint(a0, a1)))
    return _render_all(jobs)


def build_emotion(out_dir: Path, *, epochs: int = 25, per_label: int = 48, seed: int = 0,
                  log: bool = True) -> Path:
    """Train the demo emotion classifier and write its pretrained folder to ``out_dir``."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    t0 = time.time()
    _seed_everything(seed)
    yaml_text = EMOTION_YAML.format(emb=32, ch=48, ch2=96, n_out=len(EMOTION_LABELS))
    hp = load_hyperpyyaml(yaml_text)
    enc = hp["label_encoder"]
    enc.update_from_iterable(EMOTION_LABELS)
    enc.expect_len(len(EMOTION_LABELS))

    wavs: list[np.ndarray] = []
    labels: list[int] = []
    for label in EMOTION_LABELS:
        for wav in emotion_renderings(label, per_label, seed):
            wavs.append(wav)
            labels.append(int(enc.encode_label(label)))
    if log:
        print(f"[emotion] {len(wavs)} utterances rendered in {time.time() - t0:.1f}s", flush=True)

    with torch.no_grad():
        feats = []
        for wav in wavs:
            f = hp["compute_features"](torch.from_numpy(wav)[None])
            feats.append(hp["mean_var_norm"](f, torch.ones(1))[0])
    model = torch.nn.ModuleList([hp["embedding_model"], hp["classifier"]])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    order = list(range(len(wavs)))
    py_rng = random.Random(seed)
    for epoch in range(epochs):
        py_rng.shuffle(order)
        total, correct = 0.0, 0
        model.train()
        for b in range(0, len(order), 16):
            idx = order[b : b + 16]
            x, lens = _pad([feats[i] for i in idx])
            y = torch.tensor([labels[i] for i in idx])
            emb = hp["embedding_model"](x, lens)
            logp = hp["classifier"](emb).squeeze(1)
            loss = torch.nn.functional.nll_loss(logp, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += int((logp.argmax(-1) == y).sum())
        if log and (epoch % 5 == 4 or epoch == epochs - 1):
            print(f"[emotion] epoch {epoch + 1}/{epochs} loss {total / len(order):.3f} "
                  f"train acc {correct / len(order):.2f} ({time.time() - t0:.0f}s)", flush=True)
    model.eval()

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "hyperparams.yaml").write_text(yaml_text, encoding="utf-8")
    torch.save(hp["embedding_model"].state_dict(), out_dir / "embedding_model.ckpt")
    torch.save(hp["classifier"].state_dict(), out_dir / "classifier.ckpt")
    enc.save(out_dir / "label_encoder.ckpt")
    (out_dir / "labels.json").write_text(json.dumps(
        {"labels": list(EMOTION_LABELS), "styles": {k: list(v) for k, v in EMOTION_STYLES.items()},
         "seed": seed, "note": "DEMO model trained on synthetic espeak-ng prosody, not real emotion"},
        indent=1), encoding="utf-8")
    if log:
        print(f"[emotion] wrote {out_dir} in {time.time() - t0:.0f}s", flush=True)
    return out_dir


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # tiny models: one thread is as fast and does not thrash a busy machine


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "voice")
    ap.add_argument("--only", choices=["asr", "emotion"])
    ap.add_argument("--epochs", type=int, default=None, help="override the number of training epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval", action="store_true", help="after building, test the ASR on unseen voices")
    args = ap.parse_args(argv)
    if args.only in (None, "asr"):
        build_asr(args.out / "asr", epochs=args.epochs or 28, seed=args.seed)
        if args.eval:
            evaluate_asr(args.out / "asr")
    if args.only in (None, "emotion"):
        build_emotion(args.out / "emotion", epochs=args.epochs or 25, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
