"""Model sizes as data: ``ModelConfig`` (network + mask geometry), built by name like open_clip.

``ModelConfig.tiny()`` trains a step on a laptop CPU in well under a second at 64 px;
``ModelConfig.paper()`` is the 256x256 setting of the paper, sized for GPUs. A checkpoint stores
``to_dict()`` so it can rebuild its own network; ``from_dict`` refuses unknown keys so a typo in a
YAML file fails loudly instead of silently training the default.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
Check = Callable[[Any, Any, str], Any]  # (field type, raw value, dotted key) -> validated value


def build_dataclass(cls: type[T], data: dict[str, Any] | None, where: str = "", *, label: str | None = None,
                    base: T | None = None, check: Check | None = None) -> T:
    """The one strict dict -> dataclass builder (model, loss, train, tracking configs, YAML settings).

    Unknown keys raise ``ValueError`` naming the dotted key (``where.key``) and the valid keys; a
    nested dataclass field is built from a mapping; lists become tuples where typed so; a
    ``preset`` key selects the starting values when ``cls`` has ``preset(name)``; other fields
    keep ``base``'s values (default ``cls()``). ``check(type, value, dotted_key) -> value``
    validates each leaf (the settings loader passes a type checker); ``__post_init__`` checks run
    as usual. ``label`` names the config in messages (default: the class name).
    """
    label = label or cls.__name__
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{label} section {where or '<root>'!r} must be a mapping, got {data!r}")
    data = dict(data or {})
    base = base if base is not None else cls()
    if "preset" in data and hasattr(cls, "preset"):
        name = data.pop("preset")
        try:
            base = cls.preset(name)
        except (KeyError, ValueError) as e:
            raise ValueError(f"{_dotted(where, 'preset')}: unknown preset {name!r} ({e})") from None
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        key = _first_leaf(_dotted(where, unknown[0]), data[unknown[0]])
        raise ValueError(f"unknown {label} key {key!r} (valid keys here: {', '.join(sorted(fields)) or 'none'})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, raw in data.items():
        tp, key, current = hints[name], _dotted(where, name), getattr(base, name)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            if not isinstance(raw, dict):
                raise ValueError(f"{key}: expected a mapping of {tp.__name__} fields, got {raw!r}")
            values[name] = build_dataclass(tp, raw, key, label=label, check=check,
                                           base=current if isinstance(current, tp) else None)
            continue
        if isinstance(raw, list) and typing.get_origin(tp) is tuple:
            raw = tuple(raw)
        values[name] = check(tp, raw, key) if check else raw
    try:
        return dataclasses.replace(base, **values)
    except (TypeError, ValueError) as e:  # __post_init__ rejected a combination: say which section
        if not where:
            raise
        raise ValueError(f"{label} section {where!r}: {e}") from None


def _first_leaf(key: str, value: Any) -> str:
    """``nonsense.key`` rather than ``nonsense`` when a whole unknown subtree was given."""
    while isinstance(value, dict) and value:
        name, value = next(iter(value.items()))
        key = f"{key}.{name}"
    return key


def _dotted(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


@dataclass
class ModelConfig:
    # --- data geometry (must match the curated shards) ---
    image_size: int = 256            # S: aligned face crops are S x S
    num_references: int = 5          # K reference frames per target frame
    audio_dim: int = 384             # D: Whisper encoder width (tiny 384, base 512, ...)
    audio_context: int = 2           # +/- frames of audio per target frame -> A = 2 * (2c + 1) rows
    sync_frames: int = 5             # T: frames per SyncNet / sync-loss window
    # --- lower-face mask, as fractions of the crop (feathered rectangle, see mask.TEMPLATE) ---
    mask_top: float = 0.5            # first masked row / S (the template's nose tip is at ~0.535)
    mask_side: float = 0.125         # left/right margins / S left visible
    mask_feather: float = 0.03       # width of the linear ramp inside the mask edge / S
    # --- alignment module (encoders + AVAU) ---
    reference_region: str = "frame"  # what the reference encoder sees: "frame" or "mouth" (the
    #                                  masked lower face only, as the paper's reference-mouth input)
    encoder_channels: tuple[int, ...] = (64, 128, 256, 256)   # one stride-2 stage each
    embed_dim: int = 256             # E: transformer width = correspondence-embedding channels
    avau_layers: int = 6
    avau_heads: int = 8
    # --- warping module ---
    flow_scales: int = 3             # coarse-to-fine levels (the last encoder stages)
    # --- inpainting U-Net ---
    unet_channels: tuple[int, ...] = (64, 128, 256, 512)  # full res, then one stride-2 level each
    # --- SyncNet expert ---
    syncnet_size: int = 96           # frames are resized to this, then the lower half is kept
    syncnet_input: str = "motion"    # "motion": each frame minus the window mean; "frames": as is
    syncnet_channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    syncnet_embed: int = 512
    # --- patch discriminator ---
    disc_channels: int = 64
    disc_layers: int = 3
    disc_spectral_norm: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes (e.g. which Whisper model)

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}: {why}")

        stride = 2 ** len(self.encoder_channels)
        if self.image_size % stride or self.image_size < stride:
            bad("image_size", f"must be a multiple of 2**len(encoder_channels) = {stride}")
        if self.image_size % 2 ** (len(self.unet_channels) - 1):
            bad("image_size", "must be divisible by the U-Net's total stride")
        if not 1 <= self.flow_scales <= len(self.encoder_channels):
            bad("flow_scales", f"must be in [1, {len(self.encoder_channels)}]")
        if self.embed_dim % self.avau_heads:
            bad("embed_dim", f"must be divisible by avau_heads={self.avau_heads}")
        if self.syncnet_input not in ("motion", "frames"):
            bad("syncnet_input", "choose 'motion' or 'frames'")
        if self.reference_region not in ("frame", "mouth"):
            bad("reference_region", "choose 'frame' or 'mouth'")
        if not 0.0 < self.mask_top < 1.0:
            bad("mask_top", "must be a fraction in (0, 1)")
        if not 0.0 <= self.mask_side < 0.5:
            bad("mask_side", "must be a fraction in [0, 0.5)")
        for name in ("num_references", "audio_dim", "sync_frames", "avau_layers", "disc_layers"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        if self.syncnet_size % 2 ** len(self.syncnet_channels):
            bad("syncnet_size", "must be divisible by 2**len(syncnet_channels)")

    # --- derived sizes ---
    @property
    def audio_rows(self) -> int:
        """A: Whisper rows per frame window (2 rows per 25 fps video frame)."""
        return 2 * (2 * self.audio_context + 1)

    @property
    def token_grid(self) -> int:
        """g: reference/source tokens form a g x g grid (the last encoder stage)."""
        return self.image_size // 2 ** len(self.encoder_channels)

    # --- presets ---
    @classmethod
    def tiny(cls, **overrides) -> ModelConfig:
        """CPU-test size: 64 px, a few thousand channels in total."""
        base = dict(
            image_size=64, encoder_channels=(16, 32, 48), embed_dim=48, avau_layers=2,
            avau_heads=4, flow_scales=2, unet_channels=(16, 32, 48), syncnet_size=48,
            syncnet_channels=(16, 32, 64), syncnet_embed=64, disc_channels=16, disc_layers=2,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def paper(cls, **overrides) -> ModelConfig:
        """The paper's 256x256 setting (the dataclass defaults)."""
        return cls(**overrides)

    @classmethod
    def preset(cls, name: str, **overrides) -> ModelConfig:
        presets = {"tiny": cls.tiny, "paper": cls.paper}
        if name not in presets:
            raise ValueError(f"unknown ModelConfig preset {name!r}; choose from {sorted(presets)}")
        return presets[name](**overrides)

    # --- (de)serialisation ---
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return build_dataclass(cls, d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> ModelConfig:
        return cls.from_dict(json.loads(s))
