"""``CurateConfig``: the ``curate:`` settings section (a light module: no Ray, no media imports)."""

from __future__ import annotations

from dataclasses import dataclass

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv",
                    ".m4a", ".wav", ".mp3", ".aac")  # audio-only files are listed so they get rejected

IDENTITY_SOURCES = ("folder", "mapping", "input_list", "cluster", "folder+cluster")


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
    # "folder" (a folder name) | "mapping" | "input_list" | "cluster" (face descriptors) |
    # "folder+cluster" (clusters inside each folder: a folder never mixes with another)
    identity_source: str = "folder"
    identity_mapping: str | None = None  # CSV/JSON/parquet URI: uri or file stem -> identity
    identity_folder_level: int = 1  # 1: parent folder; 2: its parent (VoxCeleb person/video/clip)
    # cluster: average-linkage agglomerative clustering of each input's median dlib descriptor;
    # inputs closer than this (Euclidean) are one person. dlib's own same-person bound is 0.6;
    # 0.5 keeps look-alikes apart (measured: same person <= 0.12, different people >= 0.59).
    cluster_threshold: float = 0.5
    cluster_frames: int = 5  # frames per input for its descriptor (~55 ms each)
    identity_warn_share: float = 0.5  # warn loudly when one identity holds more of >= 10 inputs
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
        if self.identity_source not in IDENTITY_SOURCES:
            raise ValueError(f"curate.identity_source must be {'|'.join(IDENTITY_SOURCES)}, got {self.identity_source!r}")
        if self.identity_folder_level < 1:
            raise ValueError(f"curate.identity_folder_level must be >= 1, got {self.identity_folder_level}")
        if self.identity_source == "mapping" and not self.identity_mapping:
            raise ValueError("curate.identity_source=mapping needs curate.identity_mapping (a CSV/JSON URI)")
        self.extensions = tuple(e.lower() for e in self.extensions)
        self.val_identities = tuple(self.val_identities)
