"""Build small SpeechBrain pretrained folders in the layouts of the real hub models, for tests only.

No SpeechBrain model can be downloaded on the build machines, so the code that loads the real ones
(``tara_desktop.voice.asr.SpeechBrainAsr``, ``tara_desktop.voice.emotion.SpeechBrainEmotion``) is tested on
real SpeechBrain models built here with the same files and the same loading path:

* :func:`build_wav2vec2_emotion`: the layout of ``speechbrain/emotion-recognition-wav2vec2-IEMOCAP`` —
  ``hyperparams.yaml`` (SpeechBrain's HuggingFace wav2vec2 lobe + statistics pooling + a linear output),
  ``custom_interface.py`` (class ``CustomEncoderWav2vec2Classifier``, the same API as the hub's),
  ``wav2vec2.ckpt``, ``model.ckpt`` and ``label_encoder.txt`` (labels ``neu``/``hap``/``sad``/``ang``). The
  wav2vec2 encoder is a tiny one (2 layers, width 32) saved with ``transformers`` beside the checkpoints.
* :func:`build_encoder_asr`: an ``EncoderASR`` folder (Fbank → CNN → linear → CTC, character tokenizer),
  the interface of ``speechbrain/asr-wav2vec2-librispeech``-style CTC models.

The weights are seeded random (optionally a few training steps): the tests check the loading and
inference path and the engine bookkeeping, never the quality of these models' answers.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

CHARS = list("abcdefghijklmnopqrstuvwxyz' ")
EMOTION_LABELS = ("neu", "hap", "sad", "ang")

CUSTOM_INTERFACE = '''\
"""The interface class of speechbrain/emotion-recognition-wav2vec2-IEMOCAP (same name and API)."""

import torch
from speechbrain.inference.interfaces import Pretrained


class CustomEncoderWav2vec2Classifier(Pretrained):
    MODULES_NEEDED = ["wav2vec2", "avg_pool", "output_mlp"]

    def encode_batch(self, wavs, wav_lens=None, normalize=False):
        if len(wavs.shape) == 1:
            wavs = wavs.unsqueeze(0)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=self.device)
        wavs, wav_lens = wavs.to(self.device).float(), wav_lens.to(self.device)
        outputs = self.mods.wav2vec2(wavs)
        outputs = self.mods.avg_pool(outputs, wav_lens)
        return outputs.view(outputs.shape[0], -1)

    def classify_batch(self, wavs, wav_lens=None):
        outputs = self.encode_batch(wavs, wav_lens)
        outputs = self.mods.output_mlp(outputs)
        out_prob = self.hparams.softmax(outputs)
        score, index = torch.max(out_prob, dim=-1)
        text_lab = self.hparams.label_encoder.decode_torch(index)
        return out_prob, score, index, text_lab

    def classify_file(self, path):
        waveform = self.load_audio(path)
        batch = waveform.unsqueeze(0)
        rel_length = torch.tensor([1.0])
        return self.classify_batch(batch, rel_length)

    def forward(self, wavs, wav_lens=None):
        return self.classify_batch(wavs, wav_lens)
'''

EMOTION_YAML = """\
# Test model in the layout of speechbrain/emotion-recognition-wav2vec2-IEMOCAP (tests/support).
pretrained_path: {folder}
wav2vec2_hub: {hub}
encoder_dims: 32
out_n_neurons: 4

wav2vec2: !new:speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2
    source: !ref <wav2vec2_hub>
    output_norm: True
    freeze: True
    save_path: {folder}/wav2vec2_checkpoints

avg_pool: !new:speechbrain.nnet.pooling.StatisticsPooling
    return_std: False

output_mlp: !new:speechbrain.nnet.linear.Linear
    input_size: !ref <encoder_dims>
    n_neurons: !ref <out_n_neurons>
    bias: False

model: !new:torch.nn.ModuleList
    - [!ref <output_mlp>]

modules:
    wav2vec2: !ref <wav2vec2>
    output_mlp: !ref <output_mlp>
    avg_pool: !ref <avg_pool>

softmax: !new:speechbrain.nnet.activations.Softmax
    apply_log: True

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        wav2vec2: !ref <wav2vec2>
        model: !ref <model>
        label_encoder: !ref <label_encoder>
    paths:
        wav2vec2: !ref <pretrained_path>/wav2vec2.ckpt
        model: !ref <pretrained_path>/model.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""

ASR_YAML = """\
# Test EncoderASR model (tests/support): Fbank -> CNN -> linear -> CTC over characters.
sample_rate: 16000
n_mels: 40
channels: 32
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


def _seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_tiny_wav2vec2(out_dir: Path, seed: int = 0) -> Path:
    """A tiny wav2vec2 encoder saved in the HuggingFace layout (config.json, weights, preprocessor)."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    _seed(seed)
    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_kernel=(10, 8, 4), conv_stride=(5, 4, 2), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, feat_extract_norm="layer", do_stable_layer_norm=True,
        mask_time_prob=0.0, vocab_size=8,
    )
    model = Wav2Vec2Model(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(str(out_dir))
    return out_dir


def build_wav2vec2_emotion(out_dir: Path, *, seed: int = 0) -> Path:
    """A folder in the layout of speechbrain/emotion-recognition-wav2vec2-IEMOCAP (see the module doc)."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    _seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hub = build_tiny_wav2vec2(out_dir / "wav2vec2_hub", seed)
    text = EMOTION_YAML.format(folder=out_dir.as_posix(), hub=hub.as_posix())
    hp: dict[str, Any] = load_hyperpyyaml(text)
    encoder = hp["label_encoder"]
    encoder.update_from_iterable(EMOTION_LABELS)
    encoder.expect_len(len(EMOTION_LABELS))
    encoder.save(out_dir / "label_encoder.txt")
    torch.save(hp["wav2vec2"].state_dict(), out_dir / "wav2vec2.ckpt")
    torch.save(hp["model"].state_dict(), out_dir / "model.ckpt")
    (out_dir / "hyperparams.yaml").write_text(text, encoding="utf-8")
    (out_dir / "custom_interface.py").write_text(CUSTOM_INTERFACE, encoding="utf-8")
    return out_dir


def build_encoder_asr(out_dir: Path, *, seed: int = 0) -> Path:
    """An EncoderASR folder: hyperparams.yaml, encoder.ckpt, tokenizer.ckpt (seeded random weights)."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    _seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = ASR_YAML.format(n_out=len(CHARS) + 1)
    hp: dict[str, Any] = load_hyperpyyaml(text)
    tokenizer = hp["tokenizer"]
    tokenizer.insert_blank(index=0)
    tokenizer.update_from_iterable(CHARS, sequence_input=False)
    tokenizer.expect_len(len(CHARS) + 1)
    (out_dir / "hyperparams.yaml").write_text(text, encoding="utf-8")
    torch.save(hp["encoder"].state_dict(), out_dir / "encoder.ckpt")
    tokenizer.save(out_dir / "tokenizer.ckpt")
    return out_dir
