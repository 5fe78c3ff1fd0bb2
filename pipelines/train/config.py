"""``TrainConfig``: everything ``iptalker train`` needs besides the model and tracking settings.

A light module (no DeepSpeed, no MLflow) so the settings loader and the CLI can import it cheaply. The ZeRO layout lives in ``configs/deepspeed/zero{0,1,2,3}.json``; the values
that file marks ``"auto"`` (batch size, precision, schedule length) come from here, so each fact
has one home.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from iptalker_model.config import build_dataclass
from pipelines.data.augment import Augment
from preprocessing.config import ReferenceConfig

STAGES = ("syncnet", "iptalker")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TrainConfig:
    # --- what to train, on what ---
    data: str = ""                      # dataset root (local path or s3://...) holding shards/
    stage: str = "syncnet"              # "syncnet" (the lip-sync expert) or "iptalker" (G + D)
    syncnet_checkpoint: str = ""        # stage iptalker: exported SyncNet weights (frozen expert)
    out_dir: str = "runs/train"         # checkpoints, resolved config, samples
    # --- optimisation ---
    zero_stage: int = 2                 # picks configs/deepspeed/zero{N}.json unless deepspeed_config
    deepspeed_config: str = ""          # explicit DeepSpeed JSON path (overrides zero_stage)
    precision: str = "auto"             # auto: bf16 on CUDA (fp16 without bf16 support), fp32 on CPU
    batch_size: int = 2                 # micro-batch per rank
    grad_accum: int = 1
    lr: float = 2e-4
    disc_lr: float = 2e-4
    weight_decay: float = 0.0
    beta1: float = 0.5                  # AdamW beta1 of the trained network (the discriminator: 0.5)
    warmup_steps: int = 5
    max_steps: int = 40
    lr_floor: float = 0.1               # the cosine schedule ends at lr_floor x lr (cos_min_ratio)
    gradient_clipping: float = 1.0      # max global gradient norm; 0 = none
    # the syncnet stage of a two-stage run (demo, recipes): 0 = the same as the values above
    syncnet_max_steps: int = 0
    syncnet_lr: float = 0.0
    syncnet_batch_size: int = 0
    syncnet_beta1: float = 0.0
    seed: int = 1234
    # --- data ---
    num_workers: int = 1                # DataLoader workers per rank
    shuffle_buffer: int = 64            # training windows held for shuffling
    windows_per_clip: int = 4           # windows cut from one decoded clip
    epoch_batches: int = 1000           # batches per rank per nominal epoch (resampled stream)
    val_batches: int = 2
    reference_spread: str = ReferenceConfig.spread            # preprocessing.references, "random"
    reference_exclude_radius: int = ReferenceConfig.exclude_radius
    reference_pose_fraction: float = ReferenceConfig.pose_fraction
    reference_pose_tolerance: float = ReferenceConfig.pose_tolerance
    augment_flip: float = 0.0           # P(mirror a training window); pipelines.data.augment
    augment_colour: float = 0.0         # per-window recolouring strength in [0, 1); 0 = off
    augment_jitter: float = 0.0         # per-window scale/rotation/shift strength in [0, 0.5); 0 = off
    # --- cadence (in optimizer steps) ---
    log_every: int = 5
    val_every: int = 20
    sample_every: int = 20
    save_every: int = 20
    resume: bool = False                # continue from the newest complete checkpoint
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"train.{name}={getattr(self, name)!r}: {why}")

        if self.stage not in STAGES:
            bad("stage", f"choose one of {list(STAGES)}")
        if self.zero_stage not in (0, 1, 2, 3):
            bad("zero_stage", "must be 0, 1, 2 or 3")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            bad("precision", "choose auto, fp32, bf16 or fp16")
        try:
            _ = self.reference
        except ValueError as e:
            raise ValueError(f"train.reference_{e}") from None
        try:
            _ = self.augment
        except ValueError as e:
            raise ValueError(f"train.augment_{e}") from None
        for name in ("beta1", "syncnet_beta1"):
            if not 0.0 <= getattr(self, name) < 1.0:
                bad(name, "must lie in [0, 1)")
        if not 0.0 <= self.lr_floor <= 1.0:
            bad("lr_floor", "must lie in [0, 1] (a fraction of lr)")
        if self.gradient_clipping < 0:
            bad("gradient_clipping", "must be >= 0 (0 = no clipping)")
        for name in ("batch_size", "grad_accum", "max_steps", "windows_per_clip", "epoch_batches",
                     "log_every", "val_every", "sample_every", "save_every"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")

    @property
    def reference(self) -> ReferenceConfig:
        """How the loader picks the K reference frames of each window."""
        return ReferenceConfig(self.reference_exclude_radius, self.reference_pose_fraction,
                               self.reference_spread, self.reference_pose_tolerance)

    @property
    def augment(self) -> Augment:
        """How the loader alters training windows (mirror, recolour, jitter); validation never."""
        return Augment(self.augment_flip, self.augment_colour, self.augment_jitter)

    @property
    def deepspeed_json(self) -> Path:
        """The DeepSpeed config file this run uses."""
        if self.deepspeed_config:
            return Path(self.deepspeed_config)
        return REPO_ROOT / "configs" / "deepspeed" / f"zero{self.zero_stage}.json"

    def as_syncnet_stage(self) -> TrainConfig:
        """This config for the SyncNet stage of a two-stage run (pipeline, demo, learning tests):
        each ``syncnet_*`` value that is set replaces its plain counterpart."""
        return dataclasses.replace(
            self, stage="syncnet", max_steps=self.syncnet_max_steps or self.max_steps,
            lr=self.syncnet_lr or self.lr, batch_size=self.syncnet_batch_size or self.batch_size,
            beta1=self.syncnet_beta1 or self.beta1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return build_dataclass(cls, d, label="train")
