"""The domain router with the real all-MiniLM-L6-v2 model, and its degraded (keyword) mode."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tara_desktop.config import Configs, Domain, ModelChoice, ModelMapping
from tara_desktop.errors import TaraError
from tara_desktop.jobs import Cancelled, JobState
from tara_desktop.routing import embedding as embedding_module
from tara_desktop.routing.router import (
    MAX_ROUTE_CHARS,
    NO_TOPIC_PROTOTYPES,
    DomainRouter,
    EmbeddingUnavailable,
    OnnxEmbedder,
    RouteDecision,
    resolve_embedding_model,
    resolve_embedding_source,
)

CLEAR = {
    "healthcare": [
        "my gums bleed every time I brush my teeth, is that a sign of something?",
        "what dose of vitamin D should an adult take in winter",
    ],
    "business": [
        "how do I work out the lifetime value of a customer for my subscription box company",
        "should my bakery accept card payments if the fees eat into my margins",
    ],
    "education": [
        "explain the difference between mean and median for my statistics homework",
        "what were the main causes of the French revolution, I have a history test on friday",
    ],
    "creative": [
        "write a short poem about an old lighthouse keeper",
        "give me three plot ideas for a mystery set on a cruise ship",
    ],
    "leadership": [
        "one of my team leads keeps overruling her people in meetings, how should I coach her?",
        "how do I tell my team that the project they love is being cancelled",
    ],
    "technical": [
        "pip says externally-managed-environment when I install a package on Ubuntu",
        "how do I rename a column in a pandas dataframe",
    ],
    "general": [
        "hi tara, good evening!",
        "what is the longest river in Africa?",
    ],
}


def test_decision_has_every_field_and_uses_the_model_mapping(router: DomainRouter) -> None:
    decision = router.route("my docker build fails with no space left on device")
    assert isinstance(decision, RouteDecision)
    assert decision.domain == "technical"
    choice = router.mapping.for_domain("technical")
    assert (decision.model, decision.adapter, decision.adapter_scale) == (
        choice.model, choice.adapter, choice.adapter_scale
    )
    assert 0.0 <= decision.confidence <= 1.0
    assert decision.reason and not decision.degraded
    assert set(decision.to_dict()) == {
        "domain", "confidence", "reason", "model", "adapter", "adapter_scale", "degraded"
    }


@pytest.mark.parametrize("domain", list(CLEAR))
def test_clear_messages_route_to_their_domain(router: DomainRouter, domain: str) -> None:
    for text in CLEAR[domain]:
        decision = router.route(text)
        assert decision.domain == domain, (text, decision)
        assert decision.confidence >= router.min_confidence, (text, decision)


def test_adapter_of_the_routed_domain_is_returned(
    configs: Configs, embedding_cache: Path, shared_model: Callable[[str], Any]
) -> None:
    mapping = ModelMapping(
        default=ModelChoice(model="base.gguf"),
        domains={"technical": ModelChoice(model="coder.gguf", adapter="tech-lora.gguf", adapter_scale=0.7)},
    )
    r = DomainRouter(configs.domains, mapping, cache_dir=embedding_cache, embedder_factory=shared_model)
    tech = r.route("segfault when I free a pointer twice in C")
    assert (tech.domain, tech.model, tech.adapter, tech.adapter_scale) == (
        "technical", "coder.gguf", "tech-lora.gguf", 0.7
    )
    other = r.route("write me a limerick about a sleepy owl")
    assert (other.model, other.adapter) == ("base.gguf", None)


def test_ambiguous_messages_have_low_confidence_and_fall_back(router: DomainRouter) -> None:
    for text in ("can you help me with something?", "what do you think?", "ok, and then?"):
        decision = router.route(text)
        assert decision.confidence < router.min_confidence, (text, decision)
        assert decision.domain == "general", (text, decision)
        assert "low confidence" in decision.reason


def test_low_confidence_keeps_the_previous_domain(router: DomainRouter) -> None:
    decision = router.route("can you say more about the second point?", previous_domain="business")
    assert decision.domain == "business"
    assert "kept previous domain" in decision.reason
    # a clear message moves the conversation on, whatever came before
    assert router.route("how do I undo git add", previous_domain="business").domain == "technical"
    # a previous domain that no longer exists in the config is ignored
    assert router.route("and the second point?", previous_domain="astrology").domain == "general"


def test_a_message_mixing_two_domains_goes_to_one_of_them(router: DomainRouter) -> None:
    scores = router.scores("how do I motivate my sales team to hit the quarterly revenue target")
    top2 = sorted(scores, key=scores.__getitem__, reverse=True)[:2]
    assert set(top2) == {"leadership", "business"}, scores
    assert 0.9 < sum(scores.values()) <= 1.0 + 1e-6  # the rest is the "no clear domain" share


def test_pinned_domain_wins(router: DomainRouter) -> None:
    decision = router.route("how do I reverse a linked list", pinned="creative", previous_domain="technical")
    assert (decision.domain, decision.confidence, decision.reason) == ("creative", 1.0, "pinned")
    with pytest.raises(TaraError, match="unknown pinned domain 'astrology'"):
        router.route("anything", pinned="astrology")


@pytest.mark.parametrize("text", ["", "   ", "\n\t  \r\n"])
def test_empty_message_is_a_clear_error(router: DomainRouter, text: str) -> None:
    with pytest.raises(TaraError, match="the message is empty"):
        router.route(text)


def test_100_kb_message_routes_on_its_opening(router: DomainRouter) -> None:
    text = "My Python web server leaks memory under load and then crashes. " + "log line " * 12_000
    assert len(text.encode()) >= 100_000
    decision = router.route(text)
    assert decision.domain == "technical"
    # only the opening is looked at: the tail cannot change the decision
    assert router.route(text[:MAX_ROUTE_CHARS]).domain == decision.domain


def test_binary_junk_goes_to_general_with_low_confidence(router: DomainRouter) -> None:
    junk = bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8)).decode("latin-1")
    for text in (junk, "\x00\x01\x02\x7f\x1b[0m", bytes(range(256)).decode("utf-8", errors="replace")):
        decision = router.route(text)
        assert decision.domain == "general"
        assert decision.confidence < router.min_confidence
    assert router.route(junk, previous_domain="education").domain == "education"


@pytest.mark.parametrize("text", ["😀😀😀", "🙏", "👍🏽 🎉 ❤️", "1234 5678 !!!"])
def test_emoji_and_numbers_only_go_to_general_with_low_confidence(router: DomainRouter, text: str) -> None:
    decision = router.route(text)
    assert decision.domain == "general"
    assert decision.confidence < router.min_confidence


def test_emoji_inside_a_real_message_do_not_hide_its_domain(router: DomainRouter) -> None:
    assert router.route("🤒🤒 I have a fever and chills since last night 😷").domain == "healthcare"


@pytest.mark.parametrize(
    ("text", "domain"),
    [
        ("Tengo dolor de muelas y la cara hinchada, ¿tengo que ir al dentista?", "healthcare"),
        ("¿Cómo calculo el precio de venta de mis productos para tener beneficios?", "business"),
        ("¿Cómo borro una rama en git?", "technical"),
        ("Escríbeme un poema sobre el mar", "creative"),
        ("J'ai mal à la gorge et de la fièvre depuis hier", "healthcare"),
        ("Comment réinstaller Windows sans perdre mes fichiers ?", "technical"),
        ("Un de mes collaborateurs arrive toujours en retard aux réunions, comment lui en parler ?",
         "leadership"),
        ("Peux-tu m'expliquer les fractions pour mon devoir de maths ?", "education"),
    ],
)
def test_spanish_and_french_route_sensibly(router: DomainRouter, text: str, domain: str) -> None:
    assert router.route(text).domain == domain


def _legal() -> Domain:
    return Domain(
        name="legal",
        description="Law, contracts, tenancy, courts, lawyers and legal rights.",
        system_prompt="You are TARA, a careful legal information assistant.",
        voice="en-US-GuyNeural",
        examples=[
            "Can my landlord keep my deposit for normal wear and tear?",
            "Is a verbal contract legally binding?",
            "How do I contest a parking fine in court?",
            "What are my rights if I'm fired without notice?",
        ],
    )


def test_adding_a_domain_is_a_config_change(
    configs: Configs, embedding_cache: Path, tmp_path: Path, shared_model: Callable[[str], Any]
) -> None:
    for cached in embedding_cache.glob("examples-*.npz"):  # the shipped domains' vectors, as after a run
        shutil.copy(cached, tmp_path / cached.name)
    r = DomainRouter({**configs.domains, "legal": _legal()}, configs.mapping, cache_dir=tmp_path,
                     embedder_factory=shared_model)
    assert r.route("my landlord won't return the security deposit, can I sue him?").domain == "legal"
    assert r.route("how do I sort a list in python").domain == "technical"
    # only the new domain's texts were embedded: the others came from the cache
    assert shared_model("").calls[0] == len(_legal().examples) + 1


def _small_domains(configs: Configs) -> dict[str, Domain]:
    return {"legal": _legal(), "general": configs.domains["general"].model_copy(
        update={"examples": ["Hello!", "Thanks a lot.", "What's a good film to watch?"]})}


def test_example_embeddings_are_cached_without_any_text(
    configs: Configs, tmp_path: Path, shared_model: Callable[[str], Any]
) -> None:
    counting = shared_model("")
    domains = _small_domains(configs)
    first = DomainRouter(domains, configs.mapping, cache_dir=tmp_path, embedder_factory=shared_model)
    decision = first.route("can I break my rental lease early?")
    assert decision.domain == "legal"
    assert counting.calls == [4 + 1 + 3 + 1 + len(NO_TOPIC_PROTOTYPES), 1]  # examples, then the message
    (cache_file,) = tmp_path.glob("examples-*.npz")
    (lexical_file,) = tmp_path.glob("lexical-*.npz")  # the keyword index: term hashes and weights
    counting.calls.clear()
    second = DomainRouter(domains, configs.mapping, cache_dir=tmp_path, embedder_factory=shared_model)
    assert second.route("can I break my rental lease early?") == decision
    assert counting.calls == [1]  # only the message itself: the examples came from the cache
    # the cache holds hashes and vectors, not the example texts (and never a message)
    for raw in (cache_file.read_bytes(), lexical_file.read_bytes()):
        assert b"landlord" not in raw and b"rental" not in raw and b"l\x00\x00\x00a\x00\x00\x00n" not in raw
    with np.load(cache_file) as data:
        assert sorted(data.files) == ["keys", "vectors"]
    # an edited config re-embeds only what changed
    counting.calls.clear()
    domains["general"] = domains["general"].model_copy(update={"examples": ["Hello!", "Howdy partner"]})
    DomainRouter(domains, configs.mapping, cache_dir=tmp_path, embedder_factory=shared_model).route("hi")
    assert counting.calls == [1, 1]


def test_a_corrupt_cache_file_is_recomputed(
    configs: Configs, tmp_path: Path, shared_model: Callable[[str], Any]
) -> None:
    domains = _small_domains(configs)
    DomainRouter(domains, configs.mapping, cache_dir=tmp_path, embedder_factory=shared_model).route("hi")
    (cache_file,) = tmp_path.glob("examples-*.npz")
    cache_file.write_bytes(b"not a numpy file")
    r = DomainRouter(domains, configs.mapping, cache_dir=tmp_path, embedder_factory=shared_model)
    assert not r.degraded
    assert r.route("is a verbal agreement binding in court?").domain == "legal"
    with np.load(cache_file) as data:  # rewritten, valid again
        assert len(data["keys"]) == len(data["vectors"])


# -- degraded mode ---------------------------------------------------------------------------------------


def test_router_model_resolves_to_an_onnx_export(router_model: Path) -> None:
    manifest = json.loads((router_model / "manifest.json").read_text(encoding="utf-8"))
    assert (router_model / manifest["onnx"]).stat().st_size == manifest["onnx_bytes"]
    assert (router_model / manifest["tokenizer"]).is_file()
    source = resolve_embedding_source("all-MiniLM-L6-v2")  # the bundled weights it was exported from
    assert (source / "modules.json").is_file() and (source / "model.safetensors").is_file()
    with pytest.raises(EmbeddingUnavailable):
        resolve_embedding_model("no-such-embedding-model")


def test_a_missing_export_degrades_and_says_how_to_build_it(
    configs: Configs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedding_module, "router_models_dir", lambda: tmp_path / "nothing-here")
    r = DomainRouter.from_configs(configs, embedding_model="all-MiniLM-L6-v2", cache_dir=tmp_path)
    assert r.route("my laptop will not boot after the update").domain == "technical"
    assert r.degraded and r.degraded_reason and "export_onnx" in r.degraded_reason


def test_missing_embedding_model_degrades_and_says_so(
    configs: Configs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "no-model-here")
    r = DomainRouter.from_configs(configs, embedding_model=missing, cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="tara_desktop.routing.router"):
        first = r.route("how do I fix a merge conflict in my feature branch")
        second = r.route("I have a sore throat and a fever")
    assert first.degraded and second.degraded and r.degraded
    assert "degraded" in first.reason
    assert (first.domain, second.domain) == ("technical", "healthcare")
    warnings = [rec for rec in caplog.records if "degraded" in rec.getMessage()]
    assert len(warnings) == 1  # warned once, not per message
    assert r.route("anything", pinned="business").degraded


def test_a_model_that_fails_to_load_degrades(configs: Configs, tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    r = DomainRouter.from_configs(configs, embedding_model=str(broken), cache_dir=tmp_path)
    decision = r.route("write a bedtime story about a sleepy dragon")
    assert decision.degraded and decision.domain == "creative"
    assert r.degraded_reason and "could not be loaded" in r.degraded_reason


@pytest.mark.parametrize("domain", list(CLEAR))
def test_degraded_router_still_routes_clear_messages(keyword_router: DomainRouter, domain: str) -> None:
    hits = sum(keyword_router.route(text).domain == domain for text in CLEAR[domain])
    assert hits >= 1, domain


def test_degraded_router_handles_odd_input(keyword_router: DomainRouter) -> None:
    with pytest.raises(TaraError):
        keyword_router.route(" ")
    assert keyword_router.route("😀😀").domain == "general"
    assert keyword_router.route(os.urandom(2000).decode("latin-1")).domain == "general"
    long = "Mon ordinateur portable ne démarre plus après la mise à jour. " * 2000
    assert keyword_router.route(long).domain == "technical"


def test_general_domain_is_required(configs: Configs) -> None:
    domains = {k: v for k, v in configs.domains.items() if k != "general"}
    with pytest.raises(TaraError, match="'general'"):
        DomainRouter(domains, configs.mapping, embedding_model=None)


def test_non_text_message_is_a_clear_error(keyword_router: DomainRouter) -> None:
    with pytest.raises(TaraError, match="must be text"):
        keyword_router.route(b"bytes are not text")  # type: ignore[arg-type]


@pytest.mark.slow
def test_onnx_embeddings_match_the_original_sentence_transformers_model(router_model: Path) -> None:
    """The int8 ONNX graph computes what all-MiniLM-L6-v2 computes (mean pooling, normalised, 64 tokens)."""
    from sentence_transformers import SentenceTransformer

    texts = ["how do I fix my wifi", "Écris un poème sur la mer", "x" * 3000, "my boss keeps ignoring my ideas"]
    reference = SentenceTransformer(str(resolve_embedding_source("all-MiniLM-L6-v2")), device="cpu")
    reference.max_seq_length = 64
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    got = OnnxEmbedder(router_model).embed(texts)
    assert got.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    cosines = np.sum(expected * got, axis=1)
    assert cosines.min() > 0.95, cosines
    # and it is not just any unit vector: unrelated sentences stay apart
    assert float(got[0] @ got[3]) < 0.5


def test_the_same_text_embeds_the_same_alone_or_in_a_list(router: DomainRouter) -> None:
    embedder = router._embedder
    assert embedder is not None
    texts = ["how do I fix my wifi", "Écris un poème sur la mer", "x" * 3000]
    batch = embedder.embed(texts)
    for i, text in enumerate(texts):
        assert float(embedder.embed([text])[0] @ batch[i]) > 0.999


def test_warm_up_reports_progress_and_can_be_cancelled(
    configs: Configs, embedding_cache: Path, shared_model: Callable[[str], Any]
) -> None:
    seen: list[tuple[float | None, str]] = []
    r = DomainRouter.from_configs(configs, cache_dir=embedding_cache, embedder_factory=shared_model)
    r.warm_up(JobState(lambda f, m: seen.append((f, m))))
    assert [m for _, m in seen] == [
        "loading the sentence-embedding model", "embedding the domain examples", "router ready"
    ]
    assert not r.degraded
    cancelled = JobState()
    cancelled.cancel()
    fresh = DomainRouter.from_configs(configs, cache_dir=embedding_cache, embedder_factory=shared_model)
    with pytest.raises(Cancelled):
        fresh.warm_up(cancelled)
    assert fresh.route("how do I reset my router password").domain == "technical"  # loads on use


def test_keyword_index_is_cached_and_loads_the_same(configs: Configs, tmp_path: Path) -> None:
    first = DomainRouter.from_configs(configs, embedding_model=None, cache_dir=tmp_path)
    text = "Mon ordinateur ne démarre plus après la mise à jour"
    built = first.scores(text)
    cached = list(tmp_path.glob("lexical-*.npz"))
    assert len(cached) == 1
    second = DomainRouter.from_configs(configs, embedding_model=None, cache_dir=tmp_path)
    assert second.scores(text) == pytest.approx(built)
    assert second._lexical_index is not None and second._lexical_index.size == first._lexical_index.size  # type: ignore[union-attr]
    cached[0].write_bytes(b"not an npz")  # a damaged cache is rebuilt, not trusted
    third = DomainRouter.from_configs(configs, embedding_model=None, cache_dir=tmp_path)
    assert third.scores(text) == pytest.approx(built)


def test_a_first_start_embeds_no_shipped_example(configs: Configs, tmp_path: Path, router_model: Path) -> None:
    """The export step embedded the shipped examples with the same model: a fresh user cache starts from
    them, and only the message itself goes through the model."""
    calls: list[int] = []

    def factory(name: str) -> OnnxEmbedder:
        embedder = OnnxEmbedder.load(name)
        inner = embedder.embed

        def counting(texts: Any) -> np.ndarray:
            calls.append(len(texts))
            return inner(texts)

        embedder.embed = counting  # type: ignore[method-assign]
        return embedder

    r = DomainRouter.from_configs(configs, embedding_model=str(router_model), cache_dir=tmp_path,
                                  embedder_factory=factory)
    assert r.route("my laptop will not boot after the update").domain == "technical"
    assert calls == [1]
    assert list(tmp_path.glob("examples-*.npz"))  # and the user's cache now holds them
