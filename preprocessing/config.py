"""Plain dataclass configs for the per-video preprocessing primitives.

Only simple types (int/float/str/bool/None/tuple/nested dataclass) so the YAML settings loader
(`preprocess:` section of configs/local.yaml) can build them field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iptalker_model.mask import TEMPLATE


@dataclass
class MediaConfig:
    fps: float = 25.0  # every clip is resampled to this rate (index mapping, no re-encode)
    sample_rate: int = 16000
    batch_size: int = 32  # decoded frames held per batch: bounds memory on 4K inputs
    max_side: int = 1280  # decode downscale: longest side in pixels (None keeps the source)
    num_threads: int = 0  # decord threads, 0 = decord's default
    prefetch_batches: int = 2  # decode this many batches ahead in a thread (0 = decode inline)


@dataclass
class FaceConfig:
    detect_every: int = 10  # run the (slow) detector on every N-th frame; landmarks on all
    detect_max_side: int = 640  # fast pass: detector input downscaled to this longest side
    # (HOG finds face boxes >= ~72 px there, i.e. >= ~144 px on a 1280 px frame)
    upsample: int = 0  # dlib HOG upsampling in the fast pass
    min_score: float = 0.0  # HOG score threshold for a box to count as a face
    # Fine pass, on keyframes where the fast pass finds nothing: the frame is rescaled so that a
    # face of filters.min_face_size source pixels is found, at most this many pixels.
    fine_max_pixels: int = 8_000_000
    # Small-face probe: with no face tracked, every this many frames look for faces down to
    # small_face_ratio x filters.min_face_size, so a face that is there but too small is rejected
    # as face_too_small (with its size), not no_face. Capped at small_face_max_pixels (cost).
    small_face_probe_every: int = 25
    small_face_ratio: float = 0.35
    small_face_max_pixels: int = 4_000_000
    # A second face counts (multiple_faces) only from this fraction of the main face's size;
    # smaller detections are background people or false positives (clothing, posters).
    second_face_min_ratio: float = 0.5
    max_missed_keyframes: int = 2  # a tracked face survives this many keyframes the detector misses
    smooth_sigma: float = 0.8  # Gaussian smoothing of landmarks over time, in frames (0 = off)


@dataclass
class AlignConfig:
    size: int = 256  # aligned crop side
    # The template the model's lower-face mask is drawn for (iptalker_model.mask.TEMPLATE); a
    # dataset cropped with other values is refused by `iptalker train` unless the model agrees.
    template_scale: float = TEMPLATE["scale"]  # face size in the crop (1.0 = ArcFace-tight)
    template_shift_y: float = TEMPLATE["shift_y"]  # move the face up so the chin stays inside the crop
    smooth_sigma: float = 2.0  # Gaussian smoothing of the similarity parameters, in frames
    interpolation: str = "linear"  # "linear" | "cubic" | "lanczos" (cubic costs ~3x, 1 ms/frame)


@dataclass
class WhisperConfig:
    # Path/URI of an openai-whisper .pt ({"dims", "model_state_dict"}). Required: without it the
    # encoder is random and its features are worthless for a real model (README "Weights").
    checkpoint: str | None = None
    # Explicit escape for unit tests and benchmarks only: no checkpoint -> a random-init encoder
    # seeded with `seed`; dataset.json and every sample then record "random-init".
    allow_random: bool = False
    model_name: str = "tiny"  # architecture of the random-init encoder (allow_random only)
    device: str = "cpu"
    seed: int = 0  # seed of the random-init encoder (allow_random only)
    overlap_s: float = 4.0  # long audio: 30 s windows overlap this much and are crossfaded
    # Audio shorter than 30 s: False encodes it at its own length (positional embedding sliced;
    # ~10x cheaper for a 4 s clip); True pads to 30 s exactly as openai-whisper does. Curation
    # and dubbing must use the same value (dataset.json records it).
    pad_short_to_30s: bool = False


@dataclass
class FilterConfig:
    min_duration_s: float = 1.0
    max_duration_s: float | None = None
    min_fps: float = 15.0
    max_fps: float = 120.0
    min_side: int = 128  # shorter video side in pixels
    max_pixels: int | None = None  # reject above this many pixels per frame (None = accept 4K+)
    min_face_size: float = 64.0  # face width (jaw to jaw), source pixels
    # multiple_faces only when a second face is on at least this share of a clip's keyframes
    # (and on two or more): one-off detections are noise, a person beside the speaker persists
    multiple_faces_min_share: float = 0.3
    min_blur: float = 20.0  # variance of Laplacian on the mouth region of the crops
    min_audio_rms_db: float = -50.0  # clip audio below this is "silent"
    scene_threshold: float = 30.0  # mean abs diff (0-255) on small gray frames that marks a cut
    syncnet_checkpoint: str | None = None  # A/V sync filter runs only when this is set
    # LSE-C-style: median minus min embedding distance. Our SyncNet's embeddings are unit-length
    # (distances in [0, 2], not Wav2Lip's unnormalised scale where ~1.5 is typical); a trained
    # tiny expert gave 0.5-0.7 on in-sync synthetic clips. Calibrate on your own data.
    min_sync_confidence: float = 0.25
    max_sync_offset: int = 3  # |offset| in frames


@dataclass
class ClipConfig:
    min_frames: int = 25  # 1 s at 25 fps
    max_frames: int = 125  # 5 s: also the in-memory segment length
    min_face_fraction: float = 0.9  # frames of a clip that must have a tracked face


@dataclass(frozen=True)
class ReferenceConfig:
    """How references are chosen (``preprocess``-independent: used by training and dubbing)."""

    exclude_radius: int = 5      # frames within this distance of the target window are never used
    pose_fraction: float = 0.5   # keep this fraction of candidates closest in pose (at least K)
    spread: str = "openness"     # "openness": quantiles of mouth aspect ratio; "random": uniform
    pose_tolerance: float = 0.05  # pose codes closer than this (inter-ocular units) count as one pose:
                                  # below landmark noise, where ranking picks by the jaw's pull on the crop

    def __post_init__(self):
        if self.spread not in ("openness", "random"):
            raise ValueError(f"spread={self.spread!r}: choose 'openness' or 'random'")
        if not 0.0 < self.pose_fraction <= 1.0:
            raise ValueError(f"pose_fraction={self.pose_fraction!r}: must be in (0, 1]")
        if self.pose_tolerance < 0:
            raise ValueError(f"pose_tolerance={self.pose_tolerance!r}: must be >= 0")
        if self.exclude_radius < 0:
            raise ValueError(f"exclude_radius={self.exclude_radius!r}: must be >= 0")


@dataclass
class PreprocessConfig:
    media: MediaConfig = field(default_factory=MediaConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    whisper: WhisperConfig = field(default_factory=WhisperConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    clips: ClipConfig = field(default_factory=ClipConfig)
