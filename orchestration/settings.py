"""Typed settings: YAML files -> validated dataclasses, with ``--set a.b.c=value`` overrides.

The single source of truth for every job's configuration. Each section's dataclass lives next
to the code it configures (``StorageConfig`` in ``pipelines.data.storage`` ...); this module only
composes and validates them. Precedence, lowest first: dataclass defaults, the embedded
``configs/local.yaml``, each ``--config`` file in order, each ``--set`` override in order.
Errors name the dotted key and the value received, and are ``ConfigError`` (a ``UserError``):
the CLI prints them as one line and exits 2.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from iptalker_model.config import ModelConfig, build_dataclass
from iptalker_model.losses import LossConfig
from pipelines.curate.config import CurateConfig
from pipelines.data.storage import StorageConfig
from pipelines.errors import UserError
from pipelines.evaluate.config import EvaluateConfig
from pipelines.tracking import TrackingConfig
from pipelines.train.config import TrainConfig
from preprocessing.config import PreprocessConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_FILE = CONFIG_DIR / "local.yaml"


class ConfigError(UserError):
    pass


@dataclass
class RayConfig:
    address: str | None = None  # None: start Ray in-process; "auto" or host:port: join a cluster
    temp_dir: str | None = None  # local Ray only (curate, Ray Train): keep files out of /tmp/ray


@dataclass
class Settings:
    """Every section a job may read; each verb uses the ones it needs."""

    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    model: ModelConfig = field(default_factory=ModelConfig.tiny)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


# -- loading ---------------------------------------------------------------------------------


def load_settings(
    config_files: list[str | Path] | None = None,
    overrides: list[str] | None = None,
    *,
    use_default_file: bool = True,
) -> Settings:
    """Merge YAML files and ``key=value`` overrides into a validated ``Settings``."""
    data: dict[str, Any] = {}
    files = ([DEFAULT_FILE] if use_default_file and DEFAULT_FILE.exists() else []) + list(config_files or [])
    for f in files:
        _deep_merge(data, _read_yaml(Path(f)))
    for item in overrides or []:
        key, value = _parse_override(item)
        _set_dotted(data, key, value)
    return build(Settings, data)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML: {getattr(e, 'problem', e)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(loaded).__name__}")
    return loaded


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not key=value (e.g. --set curate.workers=4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # not YAML: take the text as a string
    return key.strip(), value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        child = node.get(p)
        if not isinstance(child, dict):
            child = {}
            node[p] = child
        node = child
    node[parts[-1]] = value


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = v


# -- validation ------------------------------------------------------------------------------


def build(cls: type, data: dict[str, Any] | None, where: str = "", base: Any = None) -> Any:
    """Build dataclass ``cls`` from ``data`` with ``iptalker_model.config.build_dataclass`` (unknown
    keys, nested sections, ``preset``), type-checking every value: errors are ConfigError.

    A dataclass with a ``preset(name)`` classmethod accepts a ``preset`` key that selects the
    starting values (``model: {preset: paper, image_size: 128}``).
    """
    try:
        return build_dataclass(cls, data, where, label="config", base=base, check=_validate)
    except (TypeError, ValueError) as e:  # unknown keys; a dataclass __post_init__ may reject combinations
        raise ConfigError(str(e)) from None


def _validate(tp: Any, raw: Any, key: str) -> Any:
    try:
        return _adapter(tp).validate_python(raw)
    except pydantic.ValidationError as e:
        want = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
        detail = e.errors()[0]["msg"] if e.errors() else str(e)
        raise ConfigError(f"{key}: expected {want}, got {raw!r} ({detail})") from None


@functools.cache
def _adapter(tp: Any) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(tp)


# -- output ----------------------------------------------------------------------------------


def to_dict(settings: Any, *, public: bool = True) -> dict[str, Any]:
    """Plain dict of the resolved settings; ``public`` drops credentials (safe to log/print)."""
    out = dataclasses.asdict(settings)
    if public:
        for section in out.values():
            if isinstance(section, dict):
                for k in [k for k in section if _is_secret(k)]:
                    section[k] = "***" if section[k] else None
    return out


def _is_secret(key: str) -> bool:
    return any(word in key.lower() for word in ("secret", "password", "token")) or key.lower().endswith("_key")


def dump_yaml(settings: Any) -> str:
    return yaml.safe_dump(_plain(to_dict(settings)), sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


