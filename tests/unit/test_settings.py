"""loopline.settings: defaults < TOML file < LOOPLINE_* environment < explicit overrides."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from loopline import settings
from loopline.errors import ConfigError
from loopline.kafka import load_kafka
from loopline.paths import load_paths


@dataclass(frozen=True)
class Sample:
    name: str = "default"
    count: int = 1
    ratio: float = 0.5
    enabled: bool = False
    folder: Path = Path("data")
    tags: tuple[str, ...] = ("a",)
    ports: tuple[int, ...] = (1,)
    note: str | None = None


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "loopline.toml"
    monkeypatch.setenv(settings.CONFIG_ENV, str(path))
    return path


@pytest.fixture(autouse=True)
def no_sample_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NAME", "COUNT", "RATIO", "ENABLED", "FOLDER", "TAGS", "PORTS", "NOTE"):
        monkeypatch.delenv(f"LOOPLINE_SAMPLE_{name}", raising=False)


def test_defaults_without_file_or_env(config_file: Path) -> None:
    config_file.write_text("")
    assert settings.load(Sample, "sample") == Sample()


def test_no_file_at_all_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(settings.CONFIG_ENV)
    monkeypatch.chdir(tmp_path)  # no ./loopline.toml here
    assert settings.config_file() is None
    assert settings.load(Sample, "sample") == Sample()


def test_local_loopline_toml_is_used_when_no_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(settings.CONFIG_ENV)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loopline.toml").write_text('[sample]\nname = "local"\n')
    assert settings.load(Sample, "sample").name == "local"


def test_file_values_are_typed(config_file: Path) -> None:
    config_file.write_text(
        "[sample]\n"
        'name = "from-file"\ncount = 7\nratio = 2\nenabled = true\nfolder = "~/x"\n'
        'tags = ["p", "q"]\nports = [80, 443]\n'
    )
    loaded = settings.load(Sample, "sample")
    assert loaded == Sample(
        name="from-file", count=7, ratio=2.0, enabled=True, folder=Path("~/x").expanduser(),
        tags=("p", "q"), ports=(80, 443),
    )  # fmt: skip
    assert isinstance(loaded.ratio, float)


def test_env_beats_file(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file.write_text('[sample]\nname = "file"\ncount = 2\n')
    monkeypatch.setenv("LOOPLINE_SAMPLE_COUNT", "9")
    loaded = settings.load(Sample, "sample")
    assert (loaded.name, loaded.count) == ("file", 9)


def test_overrides_beat_env_and_none_overrides_are_ignored(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text('[sample]\nname = "file"\n')
    monkeypatch.setenv("LOOPLINE_SAMPLE_NAME", "env")
    assert settings.load(Sample, "sample", name="explicit").name == "explicit"
    assert settings.load(Sample, "sample", name=None).name == "env"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("yes", True), ("ON", True), ("true", True),
     ("0", False), ("no", False), ("off", False), ("False", False)],
)  # fmt: skip
def test_env_booleans(raw: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.CONFIG_ENV, raising=False)
    monkeypatch.setenv("LOOPLINE_SAMPLE_ENABLED", raw)
    assert settings.load(Sample, "sample").enabled is expected


def test_env_tuples_and_optionals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_SAMPLE_TAGS", "x, y ,z")
    monkeypatch.setenv("LOOPLINE_SAMPLE_PORTS", "1,2")
    monkeypatch.setenv("LOOPLINE_SAMPLE_NOTE", "none")
    loaded = settings.load(Sample, "sample")
    assert (loaded.tags, loaded.ports, loaded.note) == (("x", "y", "z"), (1, 2), None)
    monkeypatch.setenv("LOOPLINE_SAMPLE_NOTE", "hello")
    assert settings.load(Sample, "sample").note == "hello"


@pytest.mark.parametrize(
    ("variable", "raw", "fragment"),
    [
        ("LOOPLINE_SAMPLE_COUNT", "seven", "expected int, got 'seven'"),
        ("LOOPLINE_SAMPLE_RATIO", "half", "expected float, got 'half'"),
        ("LOOPLINE_SAMPLE_ENABLED", "maybe", "LOOPLINE_SAMPLE_ENABLED"),
        ("LOOPLINE_SAMPLE_PORTS", "80,http", "LOOPLINE_SAMPLE_PORTS"),
    ],
)
def test_bad_env_values_raise_config_error_naming_the_variable(
    variable: str, raw: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigError) as err:
        settings.load(Sample, "sample")
    assert fragment in str(err.value)
    assert variable in str(err.value)


def test_bad_file_value_names_section_and_key(config_file: Path) -> None:
    config_file.write_text('[sample]\ncount = "many"\n')
    with pytest.raises(ConfigError, match=r"\[sample\]\.count: expected int, got 'many'"):
        settings.load(Sample, "sample")


def test_unknown_file_keys_are_rejected(config_file: Path) -> None:
    config_file.write_text("[sample]\ncuont = 3\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['cuont'\]"):
        settings.load(Sample, "sample")


def test_section_must_be_a_table(config_file: Path) -> None:
    config_file.write_text('sample = "flat"\n')
    with pytest.raises(ConfigError, match=r"\[sample\] must be a table, got str"):
        settings.load(Sample, "sample")


def test_invalid_toml_is_a_config_error(config_file: Path) -> None:
    config_file.write_text("[sample\nname = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        settings.load(Sample, "sample")


def test_named_config_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.CONFIG_ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not name a readable file"):
        settings.load(Sample, "sample")


def test_non_dataclass_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        settings.load(dict, "sample")


def test_dataclass_validation_becomes_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_KAFKA_SECURITY_PROTOCOL", "CARRIER_PIGEON")
    with pytest.raises(ConfigError, match="security_protocol must be one of"):
        load_kafka()


def test_paths_are_resolved_and_follow_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_PATHS_HOME", str(tmp_path / "home"))
    paths = load_paths()
    assert paths.home == (tmp_path / "home").resolve()
    assert paths.services == paths.home / "services"
    assert paths.jars.is_absolute()


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees its own once-per-name warnings."""
    monkeypatch.setattr(settings, "_warned", set())


def test_a_misspelt_variable_of_the_section_is_refused_like_a_toml_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOPLINE_SAMPLE_CUONT", "3")
    with pytest.raises(ConfigError) as err:
        settings.load(Sample, "sample")
    message = str(err.value)
    assert "LOOPLINE_SAMPLE_CUONT" in message and "[sample] has no field 'cuont'" in message
    assert "did you mean LOOPLINE_SAMPLE_COUNT?" in message


def test_a_misspelt_variable_of_another_section_does_not_block_this_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the section being loaded judges its variables; kafka's typo fails load_kafka."""
    monkeypatch.setenv("LOOPLINE_KAFKA_BOOTSTRAP_SEVERS", "x:1")
    assert settings.load(Sample, "sample") == Sample()
    with pytest.raises(ConfigError, match="did you mean LOOPLINE_KAFKA_BOOTSTRAP_SERVERS"):
        load_kafka()


def test_a_variable_of_no_known_section_warns_once(
    monkeypatch: pytest.MonkeyPatch, fresh_warnings: None
) -> None:
    monkeypatch.setenv("LOOPLINE_KAFAK_BOOTSTRAP_SERVERS", "x:1")
    with pytest.warns(settings.ConfigWarning, match="LOOPLINE_KAFAK_BOOTSTRAP_SERVERS"):
        assert settings.load(Sample, "sample") == Sample()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        settings.load(Sample, "sample")  # already said once


def test_non_setting_variables_neither_warn_nor_fail(
    monkeypatch: pytest.MonkeyPatch, fresh_warnings: None, config_file: Path
) -> None:
    config_file.write_text("")
    monkeypatch.setenv("LOOPLINE_SERVICE_LOG", "/tmp/x.log")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert settings.load(Sample, "sample") == Sample()


def test_every_config_in_the_repo_loads_a_listed_section() -> None:
    """A config whose section is missing from SECTIONS would make its variables warn."""
    repo = Path(__file__).resolve().parents[2]
    used = set()
    for source in repo.glob("*/**/*.py"):
        if ".venv" in source.parts or "tests" in source.parts:
            continue
        used |= set(re.findall(r'settings\.load\(\s*\w+,\s*"(\w+)"', source.read_text()))
    assert used and used <= settings.SECTIONS, used - settings.SECTIONS


def test_an_unknown_toml_table_warns(config_file: Path, fresh_warnings: None) -> None:
    config_file.write_text('[sampel]\nname = "x"\n')
    with pytest.warns(settings.ConfigWarning, match=r"\[sampel\] names no Loopline config"):
        assert settings.load(Sample, "sample") == Sample()
