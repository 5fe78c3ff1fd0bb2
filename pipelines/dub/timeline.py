"""Which source frame each output frame shows, when the new audio and the video differ in length.

Pure functions of two frame counts: the output always has the new audio's length in frames
(except ``cut-audio``), so the dubbed video ends with the speech and never drifts from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timeline:
    source: np.ndarray  # [N_out] int64: source frame (on the video's fps grid) of each output frame
    mode: str  # what was applied: "cut-video" (audio shorter), bounce, loop, freeze, "cut-audio", "exact"
    audio_frames: int  # frames the new audio covers at the video's fps

    @property
    def n_frames(self) -> int:
        return len(self.source)


def audio_frames(duration_s: float, fps: float) -> int:
    """Frames of the video's grid that `duration_s` of audio covers (the output's length)."""
    return max(1, int(round(duration_s * fps)))


def plan_timeline(n_video: int, n_audio: int, mode: str) -> Timeline:
    """Map output frames to source frames.

    n_video: frames of the source video; n_audio: frames the new audio covers; mode: what to do
    when the audio is longer (bounce = ping-pong 0..N-1, N-2..1, 0..; loop = 0..N-1, 0..;
    freeze = hold the last frame; cut-audio = stop at the video's end, audio cut).
    """
    if n_video < 1:
        raise ValueError("the video has no frames")
    if n_audio <= n_video:
        return Timeline(np.arange(n_audio, dtype=np.int64), "exact" if n_audio == n_video else "cut-video",
                        n_audio)
    k = np.arange(n_audio, dtype=np.int64)
    if mode == "cut-audio":
        return Timeline(np.arange(n_video, dtype=np.int64), mode, n_audio)
    if mode == "loop":
        src = k % n_video
    elif mode == "freeze":
        src = np.minimum(k, n_video - 1)
    elif mode == "bounce":
        period = max(2 * n_video - 2, 1)
        phase = k % period
        src = np.where(phase < n_video, phase, period - phase) if n_video > 1 else np.zeros_like(k)
    else:
        raise ValueError(f"unknown length mode {mode!r}")
    return Timeline(src.astype(np.int64), mode, n_audio)
