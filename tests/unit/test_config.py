"""Configs load into typed objects; every mistake names the file, the key and what was expected."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tara_desktop import config
from tara_desktop.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    folder = tmp_path / "configs"
    shutil.copytree(PROJECT_ROOT / "configs", folder)
    return folder


def test_shipped_configs_load(configs: Path) -> None:
    loaded = config.load_configs(configs)
    assert set(loaded.domains) >= {
        "healthcare", "business", "education", "creative", "leadership", "technical", "general"
    }
    for domain in loaded.domains.values():
        assert domain.system_prompt and domain.voice and domain.examples
    assert loaded.mapping.for_domain("technical").model
    assert loaded.mapping.for_domain("no-such-domain") == loaded.mapping.default
    assert loaded.app.llm.context_size >= 128


def test_unknown_key_names_file_and_key(configs: Path) -> None:
    path = configs / "config.yaml"
    path.write_text(path.read_text().replace("  threads: 0", "  threads: 0\n  thredas: 4"))
    with pytest.raises(ConfigError) as err:
        config.load_configs(configs)
    assert "config.yaml" in str(err.value) and "llm.thredas" in str(err.value)
    assert "unknown key" in str(err.value)


def test_wrong_type_names_key_and_value(configs: Path) -> None:
    path = configs / "config.yaml"
    path.write_text(path.read_text().replace("context_size: 2048", "context_size: lots"))
    with pytest.raises(ConfigError, match=r"config\.yaml: key llm\.context_size: .*'lots'"):
        config.load_configs(configs)


def test_missing_file(configs: Path) -> None:
    (configs / "model_mapping.json").unlink()
    with pytest.raises(ConfigError, match=r"model_mapping\.json: file not found"):
        config.load_configs(configs)


def test_bad_json_says_line(configs: Path) -> None:
    (configs / "model_mapping.json").write_text('{"default": {"model": "x"},\n  oops}')
    with pytest.raises(ConfigError, match=r"model_mapping\.json: not valid JSON \(line 2"):
        config.load_configs(configs)


def test_mapping_unknown_domain(configs: Path) -> None:
    (configs / "model_mapping.json").write_text(
        '{"default": {"model": "a.gguf"}, "domains": {"astrology": {"model": "b.gguf"}}}'
    )
    with pytest.raises(ConfigError, match=r"domains\.astrology: unknown domain"):
        config.load_configs(configs)


def test_domain_missing_prompt(configs: Path) -> None:
    path = configs / "universal_domains.yaml"
    text = path.read_text()
    start = text.index("  general:")
    path.write_text(text[:start] + "  general:\n    description: x\n    voice: v\n    examples: [hi]\n")
    with pytest.raises(ConfigError, match=r"universal_domains\.yaml: key domains\.general\.system_prompt"):
        config.load_configs(configs)


def test_user_overrides_win_and_are_validated(configs: Path) -> None:
    loaded = config.load_configs(configs, overrides={"llm": {"threads": 3}, "app": {"theme": "dark"}})
    assert loaded.app.llm.threads == 3 and loaded.app.app.theme == "dark"
    with pytest.raises(ConfigError, match=r"your settings in the profile.*llm\.threads"):
        config.load_configs(configs, overrides={"llm": {"threads": -1}})


def test_adding_a_domain_is_a_config_change(configs: Path) -> None:
    path = configs / "universal_domains.yaml"
    path.write_text(
        path.read_text()
        + "  legal:\n    description: Law.\n    voice: en-US-JennyNeural\n"
        + "    system_prompt: You are a legal helper.\n    examples: ['Can my landlord evict me?']\n"
    )
    assert "legal" in config.load_configs(configs).domains
