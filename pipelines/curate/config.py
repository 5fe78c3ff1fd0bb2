"""``CurateConfig``: the ``curate:`` settings section (a light module: no Ray, no media imports)."""

from __future__ import annotations

from dataclasses import dataclass

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv",
                    ".m4a", ".wav", ".mp3", ".aac")  # audio-only files are listed so they get rejected


@dataclass
class CurateConfig:
    # shards (docs/data-contract.md): a shard closes when either target is reached; the
    # samples of one input never straddle two shards (resume stays duplicate-free)
    shard_max_bytes: int = 512 * 2**20
    shard_max_samples: int = 2000
    shard_write_retries: int = 3
    shard_retry_backoff_s: float = 1.0

    # parallelism
    num_workers: int | None = None  # videos processed at once; None = the cluster's CPUs
    cpus_per_video: float = 1.0
    video_timeout_s: float | None = 1800.0  # a video still running after this is killed, rejected
    whisper_actors: int = 1  # encoder pool size; each loads the model once
    whisper_num_cpus: float = 0.0  # CPU-only clusters: share cores (reserving one idles it)
    whisper_num_gpus: float | None = None  # None: 1 per actor when the cluster has GPUs, else 0

    # inputs and identities
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS  # for directory/prefix listing only
    identity_source: str = "folder"  # "folder" (parent folder name) | "mapping" | "input_list"
    identity_mapping: str | None = None  # CSV/JSON/parquet URI: uri or file stem -> identity
    val_fraction: float = 0.1  # share of identities (not clips) in the validation split
    val_identities: tuple[str, ...] = ()  # forced into val (the rest split by hash)
    split_seed: str = "iptalker"

    # outputs
    dataset_version: str | None = None  # None: content hash of the committed shards
    report_thumbnails: int = 8

    def __post_init__(self) -> None:
        if self.shard_max_bytes <= 0 or self.shard_max_samples <= 0:
            raise ValueError("curate.shard_max_bytes and curate.shard_max_samples must be > 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"curate.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.identity_source not in ("folder", "mapping", "input_list"):
            raise ValueError(f"curate.identity_source must be folder|mapping|input_list, got {self.identity_source!r}")
        if self.identity_source == "mapping" and not self.identity_mapping:
            raise ValueError("curate.identity_source=mapping needs curate.identity_mapping (a CSV/JSON URI)")
        self.extensions = tuple(e.lower() for e in self.extensions)
        self.val_identities = tuple(self.val_identities)
