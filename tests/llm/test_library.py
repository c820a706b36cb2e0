"""The user's model library in the real encrypted profile, and the fit estimate."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tara_desktop.errors import TaraError
from tara_desktop.llm.catalog import load_catalog
from tara_desktop.llm.gguf_reader import InvalidGguf
from tara_desktop.llm.library import (
    SETTING_KEY,
    Memory,
    ModelLibrary,
    list_models,
)
from tara_desktop.profile import Profile

from .gguf_corpus import write_valid_gguf

MB = 1024 * 1024
GB = 1024 * MB


@pytest.fixture
def profile(tmp_path: Path) -> Iterator[Profile]:
    p = Profile.open(tmp_path / "profile")
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    (tmp_path / "files").mkdir()
    return write_valid_gguf(tmp_path / "files" / "My-Model.Q8_0.gguf")


def test_add_registers_a_link_with_its_sha256_and_audits_it(profile: Profile, model_file: Path) -> None:
    lib = ModelLibrary(profile)
    model = lib.add(model_file)
    assert model.name == "My-Model.Q8_0"
    assert model.path == model_file.resolve()
    assert model.sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert model.size_bytes == model_file.stat().st_size
    assert model.origin == "added"
    # linked, not copied: the only copy is the user's file
    assert not any(p.suffix == ".gguf" for p in profile.dir.rglob("*"))
    assert lib.models() == [model]
    stored = profile.store.get_setting(SETTING_KEY)
    assert stored[0]["path"] == str(model_file.resolve())
    entries = [e for e in profile.audit.entries() if e.event == "model_import"]
    assert len(entries) == 1
    assert entries[0].details["sha256"] == model.sha256 and entries[0].details["file"] == "My-Model.Q8_0.gguf"
    assert profile.audit.verify().ok


def test_the_library_survives_reopening_the_profile(tmp_path: Path, model_file: Path) -> None:
    with Profile.open(tmp_path / "p") as p:
        ModelLibrary(p).add(model_file, name="mine")
    with Profile.open(tmp_path / "p") as p:
        assert [m.name for m in ModelLibrary(p).models()] == ["mine"]


def test_add_refuses_bad_files_duplicates_and_adapters(profile: Profile, model_file: Path, tmp_path: Path) -> None:
    lib = ModelLibrary(profile)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(model_file.read_bytes()[:2000])
    with pytest.raises(InvalidGguf, match=r"truncated"):
        lib.add(bad)
    with pytest.raises(TaraError, match=r"does not exist"):
        lib.add(tmp_path / "nope.gguf")
    lib.add(model_file, name="one")
    with pytest.raises(TaraError, match=r"already registered as 'one'"):
        lib.add(model_file, name="two")
    other = write_valid_gguf(tmp_path / "other.gguf", seed=1)
    with pytest.raises(TaraError, match=r"a model called 'one' is already registered .*--name"):
        lib.add(other, name="ONE")
    assert [m.name for m in lib.models()] == ["one"]


def test_add_checks_the_catalog_sha256_for_a_known_file_name(profile: Profile, tmp_path: Path) -> None:
    catalog_file = tmp_path / "catalog.yaml"
    catalog_file.write_text(
        "models:\n"
        "  - {id: m1, name: M1, file: known.gguf, architecture: llama, parameters: 1B, quantization: Q8_0,\n"
        f"     ram_mb: 10, license: MIT, domains: [general], source: 'https://example.org/known.gguf', sha256: '{'0' * 64}'}}\n",
        encoding="utf-8",
    )
    catalog = load_catalog(catalog_file)
    f = write_valid_gguf(tmp_path / "known.gguf")
    with pytest.raises(InvalidGguf, match=r"sha256 .* was expected"):
        ModelLibrary(profile).add(f, catalog=catalog)
    assert ModelLibrary(profile).models() == []


def test_remove_forgets_the_model_but_keeps_the_file(profile: Profile, model_file: Path) -> None:
    lib = ModelLibrary(profile)
    lib.add(model_file, name="mine")
    removed = lib.remove("MINE")
    assert removed.name == "mine" and lib.models() == []
    assert model_file.exists()
    with pytest.raises(TaraError, match=r"no installed model is called 'mine'"):
        lib.remove("mine")


def test_list_shows_installed_bundled_and_available(profile: Profile, model_file: Path, tmp_path: Path) -> None:
    lib = ModelLibrary(profile)
    lib.add(model_file, name="mine")
    bundled = tmp_path / "install_models"
    bundled.mkdir()
    write_valid_gguf(bundled / "SmolLM2-135M-Instruct.Q4_1.gguf")
    catalog = load_catalog()
    mem = Memory(available_ram_bytes=4 * GB, total_ram_bytes=16 * GB)
    rows = list_models(lib, catalog, n_ctx=2048, budget_mb=2048, memory=mem, models_dir=bundled,
                       loaded={model_file})
    by_name = {r.name: r for r in rows}
    assert [r.name for r in rows][:2] == ["mine", "smollm2-135m-instruct"]
    assert by_name["mine"].status == "installed" and by_name["mine"].loaded
    assert by_name["mine"].fit.verdict == "fits" and by_name["mine"].size_bytes == model_file.stat().st_size
    assert by_name["smollm2-135m-instruct"].status == "bundled" and not by_name["smollm2-135m-instruct"].loaded
    assert by_name["smollm2-135m-instruct"].path == bundled / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert by_name["llama-3.2-1b-instruct-q4_0"].status == "available"
    assert by_name["llama-3.2-1b-instruct-q4_0"].fit.verdict == "fits"
    assert by_name["qwen2.5-3b-instruct-q4_0"].fit.verdict == "over budget"  # fits the 4 GB free, not 2 GB budget
    assert by_name["llama-3.1-8b-instruct-q4_k_m"].fit.verdict == "low memory"  # fits 16 GB, not the 4 GB free
    big_budget = list_models(lib, catalog, n_ctx=2048, budget_mb=64_000, memory=mem, models_dir=bundled)
    assert {r.name: r for r in big_budget}["qwen2.5-3b-instruct-q4_0"].fit.verdict == "fits"


def test_a_registered_file_that_disappeared_is_listed_as_missing(profile: Profile, model_file: Path, tmp_path: Path) -> None:
    lib = ModelLibrary(profile)
    lib.add(model_file, name="gone")
    model_file.unlink()
    rows = list_models(lib, load_catalog(), n_ctx=2048, budget_mb=2048,
                       memory=Memory(4 * GB, 16 * GB), models_dir=tmp_path)
    gone = rows[0]
    assert gone.name == "gone" and gone.status == "missing" and "does not exist" in (gone.problem or "")


def _bundled_catalog(tmp_path: Path, size: int, package: str | None = None) -> Path:
    catalog_file = tmp_path / "bundled-catalog.yaml"
    catalog_file.write_text(
        "models:\n"
        "  - {id: chat, name: Chat, file: Chat.Q4.gguf, bundled: true, architecture: llama, parameters: 1M,\n"
        f"     quantization: Q8_0, ram_mb: 10, license: MIT, domains: [general], size_bytes: {size}"
        + (f", package: {package}" if package else "") + "}\n"
        "  - {id: big, name: Big, file: Big.gguf, architecture: llama, parameters: 8B, quantization: Q4_0,\n"
        "     ram_mb: 6000, license: MIT, domains: [general], source: 'https://example.org/Big.gguf'}\n",
        encoding="utf-8",
    )
    return catalog_file


def test_resolve_model_by_path_name_catalog_id(profile: Profile, model_file: Path, tmp_path: Path) -> None:
    from tara_desktop.llm.library import resolve_model

    lib = ModelLibrary(profile)
    lib.add(model_file, name="mine")
    bundled = tmp_path / "install_models"
    bundled.mkdir()
    chat = write_valid_gguf(bundled / "Chat.Q4.gguf")
    catalog = load_catalog(_bundled_catalog(tmp_path, chat.stat().st_size))
    assert resolve_model(str(model_file), lib, catalog) == model_file.resolve()
    assert resolve_model("MINE", lib, catalog) == model_file.resolve()
    assert resolve_model("chat", lib, catalog, models_dir=bundled) == chat
    assert resolve_model("Chat.Q4.gguf", None, catalog, models_dir=bundled) == chat
    with pytest.raises(TaraError, match=r"not downloaded yet: run `tara models download big`"):
        resolve_model("big", lib, catalog)
    with pytest.raises(TaraError, match="does not exist: check the path"):
        resolve_model(str(tmp_path / "nope.gguf"), lib, catalog)
    with pytest.raises(TaraError, match="no model called 'gpt-9'"):
        resolve_model("gpt-9", lib, catalog)
    model_file.unlink()
    with pytest.raises(TaraError, match="which is gone"):
        resolve_model("mine", lib, catalog)


def test_a_bundled_model_is_found_in_the_package_that_ships_it(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A source checkout has no models/<file>: the file is in the registry package, found without importing it."""
    from tara_desktop.llm.library import bundled_file, resolve_model

    package = tmp_path / "site" / "tara_test_model_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('the model package must never be imported')\n")
    shipped = write_valid_gguf(package / "Chat.Q4.gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    catalog = load_catalog(_bundled_catalog(tmp_path, shipped.stat().st_size, package="tara_test_model_pkg"))
    empty = tmp_path / "install_models"
    empty.mkdir()
    assert bundled_file(catalog.get("chat"), empty) == shipped
    assert resolve_model("chat", None, catalog, models_dir=empty) == shipped
    # the install's own copy wins over the package
    own = write_valid_gguf(empty / "Chat.Q4.gguf")
    assert resolve_model("chat", None, catalog, models_dir=empty) == own


def test_a_missing_or_damaged_bundled_model_says_what_to_do(tmp_path: Path) -> None:
    from tara_desktop.llm.library import check_bundled, resolve_model

    good = write_valid_gguf(tmp_path / "good.gguf")
    catalog = load_catalog(_bundled_catalog(tmp_path, good.stat().st_size, package="no_such_tara_package"))
    models = tmp_path / "install_models"
    models.mkdir()
    with pytest.raises(TaraError) as missing:
        resolve_model("Chat.Q4.gguf", None, catalog, models_dir=models)
    message = str(missing.value)
    assert "Chat.Q4.gguf is missing" in message and str(models) in message and "no_such_tara_package" in message
    assert "reinstall TARA" in message and "tara models download" in message
    assert check_bundled(catalog, models) == message
    # truncated: the size is wrong
    (models / "Chat.Q4.gguf").write_bytes(good.read_bytes()[:1000])
    with pytest.raises(TaraError, match=r"Chat.Q4.gguf is damaged \(1,000 bytes, expected [\d,]+\): reinstall TARA"):
        resolve_model("chat", None, catalog, models_dir=models)
    # the right size, but not a GGUF
    (models / "Chat.Q4.gguf").write_bytes(b"\0" * good.stat().st_size)
    with pytest.raises(TaraError, match=r"Chat.Q4.gguf is damaged \(.*\): reinstall TARA, or download another model"):
        resolve_model("chat", None, catalog, models_dir=models)
    assert "damaged" in (check_bundled(catalog, models) or "")
    (models / "Chat.Q4.gguf").write_bytes(good.read_bytes())
    assert check_bundled(catalog, models) is None
