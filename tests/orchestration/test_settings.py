"""Settings: YAML + overrides -> typed dataclasses; every mistake names the key and the value."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from orchestration.settings import ConfigError, Settings, build, dump_yaml, load_settings


def test_defaults_files_and_overrides_merge_in_order(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("ray:\n  address: auto\n  temp_dir: /tmp/x\n")
    b = tmp_path / "b.yaml"
    b.write_text("ray:\n  address: 10.0.0.1:6379\n")
    s = load_settings([a, b], ["ray.temp_dir=/tmp/y", "storage.s3_anon=true"])
    assert isinstance(s, Settings)
    assert s.ray.address == "10.0.0.1:6379"  # later file wins
    assert s.ray.temp_dir == "/tmp/y"  # --set wins over files
    assert s.storage.s3_anon is True  # YAML-typed override value


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("nonsense.key=1", "'nonsense.key'"),
        ("ray.bogus=1", "'ray.bogus'"),
        ("curate.num_workers=many", "curate.num_workers: expected int"),
        ("storage=3", "storage"),
        ("novalue", "key=value"),
    ],
)
def test_bad_override_names_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("'", "'")):
        load_settings(overrides=[override])


def test_bad_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings([tmp_path / "missing.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("ray: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings([bad])
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings([listy])


@dataclass
class _Inner:
    size: int = 64
    name: str = "tiny"

    @classmethod
    def preset(cls, name: str) -> _Inner:
        return {"tiny": cls(64, "tiny"), "paper": cls(256, "paper")}[name]


@dataclass
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    ratio: float = 0.5
    sizes: tuple[int, int] = (1, 2)


def test_presets_nested_sections_and_coercion():
    out = build(_Outer, {"inner": {"preset": "paper", "name": "mine"}, "ratio": 1, "sizes": [3, 4]})
    assert out.inner == _Inner(256, "mine")  # preset first, then explicit fields
    assert out.ratio == 1.0 and out.sizes == (3, 4)
    with pytest.raises(ConfigError, match="inner.preset"):
        build(_Outer, {"inner": {"preset": "huge"}})


def test_dump_masks_credentials():
    s = load_settings(overrides=["storage.s3_secret=hunter2", "storage.s3_key=AKIA123"])
    text = dump_yaml(s)
    assert "hunter2" not in text and "AKIA123" not in text
    assert s.storage.s3_secret == "hunter2"  # the value itself is kept for use
