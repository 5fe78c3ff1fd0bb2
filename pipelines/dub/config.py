"""``DubConfig``: the ``dub:`` section of the settings (configs/local.yaml, ``--set dub.x=...``)."""

from __future__ import annotations

from dataclasses import dataclass

LENGTH_MODES = ("bounce", "loop", "freeze", "cut-audio")


@dataclass
class DubConfig:
    # audio longer than the video: bounce (ping-pong), loop, freeze (hold the last frame) or
    # cut-audio (stop at the video's end); audio shorter: the video is always cut
    length_mode: str = "bounce"
    face: tuple[float, float] | None = None  # (x, y) in source pixels: dub the face nearest to it
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N"; bf16 autocast on CUDA, fp32 on CPU
    # torch intra-op threads on CPU (0 = torch's default, one per core). The dub already overlaps
    # decoding (a thread) and encoding (ffmpeg) with the model, so 1 can beat all cores on a busy box.
    cpu_threads: int = 0
    # decoder threads for the full-resolution pass: decord's default (one per core and more) keeps
    # ~2x the frames in flight (~1.2 GB vs ~0.6 GB peak on 1080p); one thread decodes 1080p far
    # faster than the model dubs it
    decode_threads: int = 1
    chunk_frames: int = 16  # full-resolution frames decoded and dubbed at a time (bounds memory)
    model_batch: int = 16  # frames per model forward (references encoded once per forward)
    paste_feather: float = 0.04  # extra inward feather of the model's mask at paste, / crop side
    colour_match: bool = True  # shift the generated face's colour to the source at the mask edge
    fade_frames: int = 3  # dubbed runs fade in/out over this many frames (no pop at re-entry)
    max_alignment_error: float = 0.06  # RMS template-fit residual / crop side: above it, pass through
    min_run_frames: int = 5  # shorter runs of tracked frames pass through (flicker, not a face)
    crf: int = 18  # H.264 quality of the output (lower = closer to the source outside the mouth)
    preset: str = "veryfast"
    debug_video: bool = False  # also write <out>.debug.mp4: source | dubbed, side by side
    report: bool = True  # write <out>.report.json (sync, identity, coverage, timings)
    progress: bool = True  # a progress bar over the output frames (stderr)
    identity_samples: int = 8  # frames compared for the identity distance (dlib descriptor, ~55 ms each)
    max_sync_offset: int = 15  # LSE search range in frames (syncnet_python's protocol)

    def __post_init__(self):
        if self.length_mode not in LENGTH_MODES:
            raise ValueError(f"dub.length_mode={self.length_mode!r}: choose from {', '.join(LENGTH_MODES)}")
        if self.face is not None and len(self.face) != 2:
            raise ValueError(f"dub.face={self.face!r}: expected (x, y)")
        for name in ("chunk_frames", "model_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"dub.{name}={getattr(self, name)!r}: must be >= 1")
