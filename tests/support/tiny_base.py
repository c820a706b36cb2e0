"""A tiny, real Hugging Face causal language model folder, built locally in a few seconds.

No model hub is reachable on development and CI machines, so tests, benchmarks and the GGUF export
check need a base model the project builds itself. :func:`build_tiny_base` writes a folder that
``transformers`` loads with ``AutoModelForCausalLM`` / ``AutoTokenizer`` and that PEFT trains on:

- ``config.json`` + ``model.safetensors``: a llama (or GPT-2) model with random weights from a fixed seed;
- ``tokenizer.json`` + ``tokenizer_config.json`` (+ the chat template): a byte-level BPE tokenizer
  trained on a small built-in English text, with ``<|endoftext|>`` (bos), ``<|im_end|>`` (eos),
  ``<|pad|>`` and a ChatML chat template (``<|im_start|>role\\ncontent<|im_end|>\\n``).

The same arguments always give the same files (same tokenizer, same weights).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from tara_desktop.llm.chat_template import DEFAULT_CHAT_TEMPLATE

Arch = Literal["llama", "gpt2"]

BOS_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
SPECIAL_TOKENS = (BOS_TOKEN, PAD_TOKEN, IM_START, EOS_TOKEN)

CHAT_TEMPLATE = DEFAULT_CHAT_TEMPLATE  # ChatML, written once (tara_desktop.llm.engine)

# A small English text the tokenizer is trained on: everyday words from the assistant's domains.
CORPUS = """\
The assistant answers questions about health, business, education, writing, leadership and technology.
A good answer is short, clear and kind. It says what is known, what is not known, and what to do next.
Drink water, sleep well, and see a doctor when a pain does not go away after a few days.
A fever, a cough and a sore throat are common signs of a cold; rest and fluids help most people.
Take your medicine as the label says, and ask a pharmacist when you are not sure about the dose.
A small business needs a plan, a budget and customers who come back. Write down income and costs every week.
Price a product so that it covers its cost, your time and a fair profit; compare it with the market.
Marketing starts with one question: who needs this, and how will they hear about it?
A meeting works when it has a goal, an agenda, the right people and a clear decision at the end.
Students learn best with practice, feedback and rest. Explain an idea in your own words to check it.
To solve an equation, do the same thing to both sides until the unknown stands alone.
History helps us understand why the world is the way it is, and what people learned from their mistakes.
Write the first draft quickly, then read it aloud and cut every word that does not help the reader.
A story needs a character who wants something, a problem in the way, and a change by the end.
Poems can rhyme or not; what matters is the sound, the image and the feeling they leave behind.
Leaders listen first, give credit to the team, take the blame for mistakes, and keep their promises.
Give feedback that is specific, timely and about the work, not about the person.
Delegate the task with the goal, the deadline and the freedom to choose how to do it.
A computer program is a list of instructions. Variables hold values; functions take inputs and return outputs.
When the code fails, read the error message, find the line, and test one small change at a time.
Save your work often, keep backups, and update your software to stay safe from known problems.
The network is slow when too many devices share it; restart the router and check the cables.
Python, JavaScript and C are programming languages. A test checks that the code does what it should.
Hello! How can I help you today? Thank you for asking. Here is a simple step by step answer.
What is the weather like? Where is the nearest station? When does the shop open? Why is the sky blue?
The sky looks blue because air scatters blue light from the sun more than red light.
Numbers: one, two, three, four, five, six, seven, eight, nine, ten, 0 1 2 3 4 5 6 7 8 9, 100, 2024.
user assistant system: you are a helpful, private assistant that runs on this computer.
"""


def _train_tokenizer(vocab_size: int) -> Any:
    """Train a byte-level BPE tokenizer (GPT-2 style) on :data:`CORPUS`; deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in CORPUS.splitlines() if line.strip()]
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def _model_config(arch: Arch, vocab_size: int, ids: dict[str, int], hidden_size: int, layers: int) -> Any:
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "bos_token_id": ids[BOS_TOKEN],
        "eos_token_id": ids[EOS_TOKEN],
        "pad_token_id": ids[PAD_TOKEN],
    }
    if arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            **common,
        )
    if arch == "gpt2":
        from transformers import GPT2Config

        return GPT2Config(
            n_embd=hidden_size,
            n_layer=layers,
            n_head=4,
            n_positions=2048,
            n_inner=hidden_size * 2,
            **common,
        )
    raise ValueError(f"unknown arch {arch!r}; expected 'llama' or 'gpt2'")


def build_tiny_base(
    out_dir: str | os.PathLike[str],
    *,
    arch: Arch = "llama",
    seed: int = 0,
    hidden_size: int = 64,
    layers: int = 2,
    vocab_size: int = 400,
) -> Path:
    """Write a tiny random-weight model folder to ``out_dir`` (created if missing) and return its path.

    ``hidden_size`` must be a multiple of 8 (4 attention heads, even head size); 64 trains in milliseconds per step,
    256 gives rows that K-quants accept.
    """
    if hidden_size % 8:
        raise ValueError("hidden_size must be a multiple of 8")
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    raw_tok = _train_tokenizer(vocab_size)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw_tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        additional_special_tokens=[IM_START],
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: raw_tok.token_to_id(t) for t in SPECIAL_TOKENS}
    config = _model_config(arch, raw_tok.get_vocab_size(), ids, hidden_size, layers)

    # Random init from a fixed seed, independent of whatever RNG state the caller has.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS_TOKEN],
        eos_token_id=ids[EOS_TOKEN],
        pad_token_id=ids[PAD_TOKEN],
        do_sample=False,
        max_new_tokens=32,
    )
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(out)
    return out
