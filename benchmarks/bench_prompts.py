"""Domain prompts on the bundled chat model: before vs after, on a development set, in one run.

Every question of ``benchmarks/data/prompt_devset.jsonl`` (>= 10 per domain, each with the regular
expressions a good answer must all match) is answered twice by the bundled SmolLM2-135M-Instruct through
TARA's real engine, with the same seed:

- **before**: the domain system prompts, emotion styling and sampling TARA had before the real model
  (copied below as they were in commit bbdb401: temperature 0.7, top_p 0.95, no repeat penalty), no
  safety layer;
- **after**: today's ``configs/universal_domains.yaml`` prompts through ``DomainRouter.system_prompt``
  (emotion styling included), the model's catalog preset (``tara_desktop.llm.presets``), and the
  safety layer (``tara_desktop.safety.guard``) exactly as a turn applies them.

It prints, per domain, the share of answers that pass, before and after; the loop rate (a reply that
repeats itself); the unrelated-opener rate (a first sentence that shares no word with the question and is
not a greeting or an acknowledgement); and the share of urgent health questions that point to a doctor
or emergency services. Targets (MISSED is printed when one is missed): after >= before in every domain,
after >= 60 % overall, urgent 100 %, loops 0 %, unrelated openers <= 5 %.

Replies are capped at ``--max-tokens`` (default 64) to keep the run short; the checks look for what a
good answer says early. Run: .venv/bin/python benchmarks/bench_prompts.py [--domain D] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tara_desktop.config import load_configs  # noqa: E402
from tara_desktop.jobs import JobState  # noqa: E402
from tara_desktop.llm.engine import Engine  # noqa: E402
from tara_desktop.llm.generation import GenerationSettings  # noqa: E402

DEVSET = ROOT / "benchmarks" / "data" / "prompt_devset.jsonl"

# ---------------------------------------------------------------------------------------- "before"
BEFORE_PROMPTS = {
    "healthcare": "You are TARA, a careful health assistant. Give clear, general health information, "
                  "say when something needs a doctor, and never pretend to diagnose.",
    "business": "You are TARA, a practical business advisor. Be concrete about numbers, trade-offs and next steps.",
    "education": "You are TARA, a patient tutor. Explain step by step, check understanding, and give a small example.",
    "creative": "You are TARA, an imaginative creative partner. Offer vivid ideas and build on the user's voice.",
    "leadership": "You are TARA, an experienced leadership coach. Be direct, empathetic and practical.",
    "technical": "You are TARA, a precise technical assistant. Give working code and exact steps; say what you assume.",
    "general": "You are TARA, a friendly and helpful assistant. Answer clearly and briefly.",
}


def before_system(domain: str, emotion: str | None) -> str:
    prompt = BEFORE_PROMPTS[domain]
    if emotion in ("sad", "angry", "fear"):
        feeling = {"sad": "sad or low", "angry": "frustrated or angry", "fear": "anxious or afraid"}[emotion]
        prompt += (f"\nThe person seems {feeling}. Stay calm and warm: first acknowledge how they feel in one "
                   "short sentence, then answer in a few short, plain sentences with one clear next step. "
                   "Be supportive, never dismissive, and do not lecture.")
        if emotion == "fear" and domain == "healthcare":
            prompt += " If anything sounds urgent, say plainly to contact emergency services or a doctor now."
    elif emotion == "happy":
        prompt += "\nThe person sounds upbeat; match their warmth and energy while staying helpful."
    return prompt


BEFORE_SETTINGS = dict(temperature=0.7, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.0)

# ---------------------------------------------------------------------------------------- checks
_STOP = set("""a an the and or but if of to in on at for with from by about into over after before is are was were
be been being do does did have has had i you he she it we they me my your our their this that these those what which
who whom how why when where can could should would will shall may might must not no yes so than then there here
just also very some any more most much many get got make made want need like one two""".split())
_ACK = re.compile(r"^\s*(sure|certainly|of course|absolutely|great|good|yes|no|hello|hi|hey|thank|thanks|"
                  r"i'?m sorry|i am sorry|sorry|i understand|i hear|it sounds|that sounds|here|okay|ok|"
                  r"what a|oh|wow|\*\*safety notice)", re.IGNORECASE)
_ROLE_LEAK = re.compile(r"<\|im_|<\|endoftext|^\s*(user|assistant|system)\s*:", re.IGNORECASE | re.MULTILINE)


def _words(text: str) -> set[str]:
    return {w[:5] for w in re.findall(r"[a-z][a-z'-]+", text.lower()) if len(w) >= 4 and w not in _STOP}


def first_sentence(reply: str) -> str:
    body = reply.strip()
    if body.startswith("**Safety notice"):
        body = body.split("\n\n", 1)[1] if "\n\n" in body else ""
    m = re.match(r"(.+?[.!?:])(\s|$)", body.strip(), re.DOTALL)
    return (m.group(1) if m else body.strip())[:300]


def unrelated_opener(question: str, reply: str, domain_words: set[str]) -> bool:
    """A first sentence with no word in common with the question (or the domain's description), that is
    not a greeting, an acknowledgement, or a creative piece (whose first line is free by design)."""
    first = first_sentence(reply)
    if len(first.split()) < 4 or _ACK.match(first):
        return False
    return not (_words(first) & (_words(question) | domain_words))


def loops(reply: str) -> bool:
    """The reply repeats itself: one sentence (or line) three times, or an 8-word run four times."""
    parts = [p.strip().lower() for p in re.split(r"[.!?\n]+", reply) if len(p.split()) >= 3]
    counts: dict[str, int] = defaultdict(int)
    for p in parts:
        counts[p] += 1
    if counts and max(counts.values()) >= 3:
        return True
    words = reply.lower().split()
    grams: dict[tuple[str, ...], int] = defaultdict(int)
    for i in range(len(words) - 7):
        grams[tuple(words[i:i + 8])] += 1
    return bool(grams) and max(grams.values()) >= 4


def passes(item: dict[str, Any], reply: str) -> bool:
    if _ROLE_LEAK.search(reply):
        return False
    return all(re.search(rx, reply, re.IGNORECASE) for rx in item["must"])


# ---------------------------------------------------------------------------------------- runs
@dataclass
class Outcome:
    passed: list[bool] = field(default_factory=list)
    looped: list[bool] = field(default_factory=list)
    opener: list[bool] = field(default_factory=list)
    urgent_ok: list[bool] = field(default_factory=list)
    seconds: float = 0.0


def _stream(engine: Engine, messages: list[dict[str, str]], settings: GenerationSettings) -> Iterator[str]:
    return engine.stream_chat(messages, settings, JobState())


def answer(engine: Engine, system: str, question: str, settings: GenerationSettings,
           wrap: Any = None) -> str:
    engine.reset()  # every question from a cold prompt: neither side is flattered by the prefix cache
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    pieces: Iterable[str] = _stream(engine, messages, settings)
    if wrap is not None:
        pieces = wrap(pieces)
    return "".join(pieces).strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", help="only this domain")
    ap.add_argument("--limit", type=int, default=0, help="at most N questions per domain (0 = all)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--show", action="store_true", help="print every reply")
    ap.add_argument("--only", choices=("before", "after"), help="run one side")
    args = ap.parse_args()

    from tara_desktop import safety
    from tara_desktop.llm.library import default_chat_model
    from tara_desktop.llm.presets import generation_settings
    from tara_desktop.routing.router import DomainRouter

    configs = load_configs()
    router = DomainRouter.from_configs(configs)  # system_prompt() only: the embedding model is not loaded
    model = default_chat_model()
    items = [json.loads(line) for line in DEVSET.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.domain:
        items = [i for i in items if i["domain"] == args.domain]
    if args.limit:
        seen: dict[str, int] = defaultdict(int)
        kept = []
        for i in items:
            seen[i["domain"]] += 1
            if seen[i["domain"]] <= args.limit:
                kept.append(i)
        items = kept
    domain_words = {name: _words(d.description) for name, d in configs.domains.items()}

    before_settings = GenerationSettings(max_tokens=args.max_tokens, seed=args.seed, **BEFORE_SETTINGS)  # type: ignore[arg-type]
    after = generation_settings(model, configs.app.llm)
    after_settings = GenerationSettings(**{**after.__dict__, "max_tokens": min(after.max_tokens, args.max_tokens),
                                           "seed": args.seed})
    print(f"model {model.name}; {len(items)} questions; max {args.max_tokens} tokens, seed {args.seed}")
    print(f"after settings: temperature {after_settings.temperature}, top_p {after_settings.top_p}, "
          f"top_k {after_settings.top_k}, min_p {after_settings.min_p}, repeat_penalty {after_settings.repeat_penalty}, "
          f"stop {list(after_settings.stop)}")

    t_load = time.perf_counter()
    engine = Engine.load(model, n_ctx=1024, n_threads=args.threads, n_batch=256)
    print(f"loaded in {time.perf_counter() - t_load:.2f} s")
    results: dict[str, dict[str, Outcome]] = {"before": defaultdict(Outcome), "after": defaultdict(Outcome)}
    sides = [args.only] if args.only else ["before", "after"]
    try:
        for item in items:
            domain, question, emotion = item["domain"], item["question"], item.get("emotion")
            for side in sides:
                t0 = time.perf_counter()
                if side == "before":
                    reply = answer(engine, before_system(domain, emotion), question, before_settings)
                else:
                    reply = answer(engine, router.system_prompt(domain, emotion), question, after_settings,
                                   wrap=lambda p, q=question, d=domain: safety.guard(q, d, p))
                out = results[side][domain]
                out.seconds += time.perf_counter() - t0
                ok = passes(item, reply)
                out.passed.append(ok)
                out.looped.append(loops(reply))
                out.opener.append(unrelated_opener(question, reply, domain_words[domain]))
                if item.get("urgent"):
                    out.urgent_ok.append(bool(re.search(r"doctor|emergency|911|112|999|988|crisis", reply, re.I)))
                if args.show:
                    flags = ("PASS" if ok else "fail") + (" LOOP" if out.looped[-1] else "") + \
                            (" OPENER" if out.opener[-1] else "")
                    print(f"\n--- {side} [{domain}] {question}  => {flags}\n{reply}")
    finally:
        engine.close()

    def rate(values: list[bool]) -> float:
        return sum(values) / len(values) if values else 0.0

    missed: list[str] = []
    print(f"\n{'domain':<12} {'n':>3} {'before':>8} {'after':>8}   loops b/a   openers b/a")
    for domain in sorted({i['domain'] for i in items}):
        b, a = results["before"][domain], results["after"][domain]
        n = len(a.passed or b.passed)
        print(f"{domain:<12} {n:>3} {rate(b.passed):>8.0%} {rate(a.passed):>8.0%}   "
              f"{sum(b.looped):>2} / {sum(a.looped):<2}     {sum(b.opener):>2} / {sum(a.opener):<2}")
        if len(sides) == 2 and rate(a.passed) < rate(b.passed):
            missed.append(f"{domain}: after {rate(a.passed):.0%} < before {rate(b.passed):.0%}")

    def total(side: str, attr: str) -> list[bool]:
        return [v for o in results[side].values() for v in getattr(o, attr)]

    for side in sides:
        secs = sum(o.seconds for o in results[side].values())
        print(f"{side:>6}: pass {rate(total(side, 'passed')):.0%}, loops {rate(total(side, 'looped')):.0%}, "
              f"unrelated openers {rate(total(side, 'opener')):.0%}, urgent -> doctor/emergency "
              f"{rate(total(side, 'urgent_ok')):.0%} ({len(total(side, 'urgent_ok'))}), {secs:.0f} s")
    if "after" in sides:
        if len(sides) == 2:
            ratio = rate(total("after", "passed")) / max(rate(total("before", "passed")), 1e-9)
            print(f"after/before pass ratio: {ratio:.2f}")
        checks = [
            ("after pass rate >= 60 %", rate(total("after", "passed")) >= 0.60),
            ("urgent health questions all point to a doctor or emergency services",
             rate(total("after", "urgent_ok")) == 1.0 or not total("after", "urgent_ok")),
            ("no reply loops", rate(total("after", "looped")) == 0.0),
            ("unrelated openers <= 5 %", rate(total("after", "opener")) <= 0.05),
        ]
        for name, ok in checks:
            print(f"  {'PASS' if ok else 'MISSED'}: {name}")
            if not ok:
                missed.append(name)
    print("\nSUMMARY: " + ("all targets met" if not missed else "MISSED: " + "; ".join(missed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
