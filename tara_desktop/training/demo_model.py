"""TARA's demo model, built in the project from the project's own data by one command.

No pretrained weights can be downloaded where TARA is developed, so the model a first-run user talks to
is made here, deterministically, from ``resources/demo_corpus`` (a few dozen Q/A pairs per domain):

1. a byte-level BPE tokenizer trained on the corpus with ``tokenizers`` (ChatML special tokens);
2. a small Llama-architecture base (a few MB) trained on every domain, with each domain's system prompt
   from ``configs/universal_domains.yaml`` in half of the samples, loss on the replies only;
3. one LoRA adapter per domain, trained briefly on that domain (PEFT);
4. the export pipeline: base → ``models/tara-demo.gguf`` (Q8_0), adapters → ``models/adapters/<domain>.gguf``;
   both validated in llama.cpp; ``configs/model_mapping.json`` then points each domain at its adapter.

Every tenth pair of each domain is held out and used for the validation perplexity that is printed.
It is a demo: its replies are short and only on-topic-ish, and its GGUF says so (general.name and
general.description). Run it with ``scripts/build-demo-model``.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tara_desktop import paths
from tara_desktop.errors import TaraError
from tara_desktop.jobs import JobState
from tara_desktop.training import gguf_export as gx

log = logging.getLogger(__name__)

DOMAINS = ("healthcare", "business", "education", "creative", "leadership", "technical", "general")
SPECIALS = ("<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
DESCRIPTION = (
    "TARA demo model: a tiny model trained in a few minutes on TARA's small demo corpus so the app works "
    "out of the box. Its answers are short and simple; add a real model (tara models add PATH) for real use."
)


@dataclass
class DemoSettings:
    """Sizes and schedule of the demo build (the defaults are what ships)."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 384
    layers: int = 3
    heads: int = 4
    max_length: int = 128
    base_epochs: int = 30
    base_lr: float = 4e-3
    batch_size: int = 16
    adapter_epochs: int = 6
    adapter_lr: float = 3e-3
    adapter_rank: int = 8
    adapter_alpha: int = 16
    seed: int = 0
    threads: int = 1
    quant: str = "Q8_0"


@dataclass
class DemoResult:
    model: Path
    adapters: dict[str, Path]
    base_perplexity: float
    adapter_perplexity: dict[str, tuple[float, float]] = field(default_factory=dict)  # domain → (base, adapted)
    samples: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------------------
# data


def load_corpus(folder: Path) -> dict[str, tuple[list[list[dict[str, str]]], list[list[dict[str, str]]]]]:
    """domain → (train chats, held-out chats); every tenth pair is held out."""
    out = {}
    for domain in DOMAINS:
        path = folder / f"{domain}.jsonl"
        if not path.is_file():
            raise TaraError(f"{path} is missing; restore resources/demo_corpus from the project")
        chats = [json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        out[domain] = ([c for i, c in enumerate(chats) if i % 10 != 9], [c for i, c in enumerate(chats) if i % 10 == 9])
    return out


def system_prompts() -> dict[str, str]:
    from tara_desktop.config import load_configs

    domains = load_configs().domains
    return {d: " ".join(domains[d].system_prompt.split()) for d in DOMAINS if d in domains}


def render(chat: list[dict[str, str]], system: str | None) -> tuple[str, str]:
    """(prompt, reply) in the ChatML layout of :data:`CHAT_TEMPLATE`; the reply ends with <|im_end|>."""
    prompt = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    for msg in chat[:-1]:
        prompt += f"<|im_start|>{msg['role']}\n{msg['content']}<|im_end|>\n"
    prompt += "<|im_start|>assistant\n"
    return prompt, chat[-1]["content"] + "<|im_end|>"


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


# ---------------------------------------------------------------------------------------------------------
# training


def _encode(tok: Any, prompt: str, reply: str, max_length: int, reply_only: bool) -> tuple[list[int], list[int]]:
    p = tok.encode(prompt).ids
    r = tok.encode(reply).ids
    ids = (p + r)[:max_length]
    labels = ([-100] * len(p) + r if reply_only else p + r)[:max_length]
    return ids, labels


def _train(
    model: Any, examples: list[tuple[list[int], list[int]]], *, epochs: int, lr: float, batch_size: int,
    pad_id: int, seed: int, state: JobState, span: tuple[float, float], label: str, weight_decay: float = 0.0,
) -> float:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, (len(examples) + batch_size - 1) // batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / total))
    rng = random.Random(seed)
    model.train()
    step, loss_value = 0, float("nan")
    for epoch in range(epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            state.check()
            batch = [examples[j] for j in order[i : i + batch_size]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([x + [pad_id] * (width - len(x)) for x, _ in batch])
            labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            loss_value = float(loss)
            state.report(span[0] + (span[1] - span[0]) * step / total, f"{label}: epoch {epoch + 1}/{epochs}, loss {loss_value:.3f}")
    model.eval()
    return loss_value


def _examples(tok: Any, chats: list[list[dict[str, str]]], system: str | None, rng: random.Random, *,
              max_length: int, both: bool) -> list[tuple[list[int], list[int]]]:
    """Encoded samples. The base (``both`` False) learns every token, so it models the whole chat; an
    adapter (``both`` True: each pair with and without the system prompt) learns the replies only."""
    out = []
    for chat in chats:
        use_system = system is not None and (both or rng.random() < 0.5)
        out.append(_encode(tok, *render(chat, system if use_system else None), max_length, reply_only=both))
        if both and system is not None:
            out.append(_encode(tok, *render(chat, None), max_length, reply_only=True))
    return out


def build_demo_model(
    *,
    corpus_dir: Path | None = None,
    models_dir: Path | None = None,
    mapping_file: Path | None = None,
    settings: DemoSettings | None = None,
    state: JobState | None = None,
    log_line: Callable[[str], None] | None = None,
) -> DemoResult:
    """Build the demo model and its adapters into ``models_dir`` (default: the install's ``models/``)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    from tara_desktop.training import quantize as qz

    s = settings or DemoSettings()
    state = state or JobState()
    say = log_line or (lambda _m: None)
    start = time.perf_counter()
    corpus_dir = corpus_dir or paths.resources_dir() / "demo_corpus"
    models_dir = models_dir or paths.bundled_models_dir()
    corpus = load_corpus(corpus_dir)
    prompts = system_prompts()
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads)
    rng = random.Random(s.seed)

    texts = [m["content"] for train, held in corpus.values() for c in train + held for m in c]
    texts += [*prompts.values(), "system", "user", "assistant"]
    raw_tok = train_tokenizer(texts, s.vocab_size)
    ids = {t: raw_tok.token_to_id(t) for t in SPECIALS}
    gx.remove_stale_partials(models_dir / "tara-demo.gguf")  # leftovers of a build that was killed
    work = gx.make_workdir(models_dir)
    try:
        base_dir = work / "base"
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=raw_tok, bos_token=SPECIALS[0], eos_token=SPECIALS[3], pad_token=SPECIALS[1],
            additional_special_tokens=[SPECIALS[2]], model_max_length=2048, clean_up_tokenization_spaces=False,
        )
        tokenizer.chat_template = CHAT_TEMPLATE
        config = LlamaConfig(
            vocab_size=raw_tok.get_vocab_size(), hidden_size=s.hidden_size, intermediate_size=s.intermediate_size,
            num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.heads,
            max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True,
            bos_token_id=ids[SPECIALS[0]], eos_token_id=ids[SPECIALS[3]], pad_token_id=ids[SPECIALS[1]],
        )
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        say(f"base: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, vocab {config.vocab_size}")

        train_all = [ex for d in DOMAINS for ex in _examples(raw_tok, corpus[d][0], prompts.get(d), rng, max_length=s.max_length, both=False)]
        loss = _train(model, train_all, epochs=s.base_epochs, lr=s.base_lr, batch_size=s.batch_size,
                      pad_id=ids[SPECIALS[1]], seed=s.seed, state=state, span=(0.0, 0.6), label="base",
                      weight_decay=0.05)
        say(f"base trained: final loss {loss:.3f}")
        model.save_pretrained(str(base_dir))
        tokenizer.save_pretrained(str(base_dir))

        adapter_dirs: dict[str, Path] = {}
        for n, domain in enumerate(DOMAINS):
            torch.manual_seed(s.seed + n + 1)
            base_model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
            lora = LoraConfig(r=s.adapter_rank, lora_alpha=s.adapter_alpha, lora_dropout=0.0,
                              target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
            peft_model = get_peft_model(base_model, lora)
            examples = _examples(raw_tok, corpus[domain][0], prompts.get(domain), rng, max_length=s.max_length, both=True)
            lo = 0.6 + 0.25 * n / len(DOMAINS)
            loss = _train(peft_model, examples, epochs=s.adapter_epochs, lr=s.adapter_lr, batch_size=s.batch_size,
                          pad_id=ids[SPECIALS[1]], seed=s.seed + n, state=state, span=(lo, lo + 0.25 / len(DOMAINS)),
                          label=f"adapter {domain}")
            adapter_dirs[domain] = work / "adapters" / domain
            peft_model.save_pretrained(str(adapter_dirs[domain]))
            say(f"adapter {domain}: final loss {loss:.3f}")

        state.report(0.86, "exporting to GGUF")
        model_out = models_dir / "tara-demo.gguf"
        f16 = work / "tara-demo.f16.gguf"
        gx.write_model_gguf(base_dir, f16, dtype="f16", name=gx.DEMO_NOTICE, description=DESCRIPTION, state=state)
        with gx.atomic_output(model_out, overwrite=True) as partial:
            qz.quantize(f16, partial, s.quant, threads=s.threads, state=state)
            gx.validate_model(partial)
        info = gx.base_info(base_dir)
        (models_dir / "adapters").mkdir(exist_ok=True)
        adapters: dict[str, Path] = {}
        for domain, folder in adapter_dirs.items():
            out = models_dir / "adapters" / f"{domain}.gguf"
            with gx.atomic_output(out, overwrite=True) as partial:
                gx.write_adapter_gguf(folder, partial, info, dtype="f16", name=f"{gx.DEMO_NOTICE} {domain} adapter", state=state)
                gx.validate_adapter(partial, model_out)
            adapters[domain] = out
        state.report(0.92, "measuring perplexity")
        held = {d: "\n".join(render(c, prompts.get(d))[0] + render(c, None)[1] for c in corpus[d][1]) for d in DOMAINS}
        all_held = "\n".join(held.values())
        result = DemoResult(model_out, adapters, qz.perplexity(model_out, all_held, threads=s.threads))
        for domain in DOMAINS:
            result.adapter_perplexity[domain] = (
                qz.perplexity(model_out, held[domain], threads=s.threads),
                qz.perplexity(model_out, held[domain], adapter=adapters[domain], threads=s.threads),
            )
        if mapping_file is not None:
            point_mapping_at_adapters(mapping_file, adapters, models_dir)
        result.samples = sample_replies(model_out, adapters, prompts, threads=s.threads)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.perf_counter() - start
    state.report(1.0, "demo model built")
    return result


def point_mapping_at_adapters(mapping_file: Path, adapters: dict[str, Path], models_dir: Path) -> None:
    """Set only the ``adapter`` value of each domain in model_mapping.json (paths relative to models/)."""
    data = json.loads(mapping_file.read_text(encoding="utf-8"))
    for domain, path in adapters.items():
        if domain in data.get("domains", {}):
            data["domains"][domain]["adapter"] = path.relative_to(models_dir).as_posix()
    text = "{\n" + f'  "default": {json.dumps(data["default"])},\n' + '  "domains": {\n'
    rows = [f"    {json.dumps(d)}: {json.dumps(v)}" for d, v in data["domains"].items()]
    text += ",\n".join(rows) + "\n  }\n}\n"
    tmp = mapping_file.with_name(mapping_file.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    import os

    os.replace(tmp, mapping_file)


def sample_replies(model: Path, adapters: dict[str, Path], prompts: dict[str, str], *, threads: int = 2) -> dict[str, str]:
    """One greedy reply per domain (with its adapter and system prompt) to a question not in the corpus."""
    import ctypes

    import llama_cpp

    questions = {
        "healthcare": "What can I do about a sore throat?",
        "business": "How should I price a new service?",
        "education": "How do I study for a math test?",
        "creative": "Can you give me an idea for a poem?",
        "leadership": "How do I help my team work better together?",
        "technical": "My laptop is very slow, what should I do?",
        "general": "Hi, who are you?",
    }
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=512, n_threads=threads, seed=0, verbose=False)
    out: dict[str, str] = {}
    try:
        for domain, question in questions.items():
            lora = llama_cpp.llama_adapter_lora_init(llm.model, str(adapters[domain]).encode())
            arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(lora)
            llama_cpp.llama_set_adapters_lora(llm.ctx, arr, 1, (ctypes.c_float * 1)(1.0))
            llm.reset()
            messages = [{"role": "system", "content": prompts.get(domain, "")}, {"role": "user", "content": question}]
            reply = llm.create_chat_completion(messages=messages, max_tokens=48, temperature=0.0)  # type: ignore[arg-type]
            out[domain] = str(reply["choices"][0]["message"]["content"]).strip()  # type: ignore[index]
            llama_cpp.llama_set_adapters_lora(llm.ctx, None, 0, None)
            llama_cpp.llama_adapter_lora_free(lora)
    finally:
        llm.close()
    return out


def main() -> int:
    """``scripts/build-demo-model``: build, export, point the mapping at the adapters, print the numbers."""
    import sys

    def progress(fraction: float | None, message: str) -> None:
        pct = "    " if fraction is None else f"{round(fraction * 100):3d}%"
        sys.stderr.write(f"\r{pct} {message}"[:100].ljust(100))
        sys.stderr.flush()

    def line(message: str) -> None:
        sys.stderr.write("\n" + message + "\n")

    try:
        result = build_demo_model(
            mapping_file=paths.configs_dir() / "model_mapping.json", state=JobState(progress), log_line=line,
        )
    except TaraError as exc:
        sys.stderr.write(f"\nerror: {exc}\n")
        return 2
    sys.stderr.write("\n")
    size = result.model.stat().st_size + sum(p.stat().st_size for p in result.adapters.values())
    print(f"built {result.model} and {len(result.adapters)} adapters ({size / 1e6:.2f} MB in all) in {result.seconds:.0f} s")
    print(f"validation perplexity (held-out pairs, all domains): {result.base_perplexity:.2f}")
    print(f"{'domain':<12}{'base ppl':>10}{'+adapter':>10}  sample reply (greedy, with adapter)")
    for domain, (base, adapted) in result.adapter_perplexity.items():
        print(f"{domain:<12}{base:>10.2f}{adapted:>10.2f}  {result.samples.get(domain, '')[:90]!r}")
    return 0
