"""Score one clip's candidates in both settings, and average the per-clip scores.

Self-reconstruction (the clip's own audio, ground truth exists): PSNR/SSIM on the full crop and
the mouth box, LSE, identity, mouth activity. Cross-audio (another clip's audio): LSE, identity,
mouth activity only. Identity compares each frame with the source frame at the same time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from iptalker_model.mask import mouth_box as mask_box
from pipelines import metrics
from pipelines.data import shards as contract


@dataclass
class Face:
    """What the metrics need of one video, computed once: landmarks, descriptors, opening."""

    frames: np.ndarray
    landmarks: np.ndarray
    descriptors: np.ndarray

    @classmethod
    def of(cls, frames: np.ndarray, identity_every: int = 1) -> Face:
        """Landmarks on every frame; descriptors on every ``identity_every``-th (NaN between)."""
        lm = metrics.landmarks_of(frames)
        desc = np.full((len(frames), 128), np.nan, np.float32)
        desc[::identity_every] = metrics.face_descriptors(frames[::identity_every], lm[::identity_every])
        return cls(frames, lm, desc)

    @property
    def opening(self) -> np.ndarray:
        return metrics.mouth_opening(self.landmarks)


def clip_mouth_box(source: Face, cfg) -> tuple[tuple[int, int, int, int], str]:
    """The mouth box from the source's landmarks, or the model's mask box when dlib found none."""
    try:
        return metrics.mouth_box(source.landmarks, source.frames.shape[1:3]), "landmarks"
    except ValueError:
        rows, cols = mask_box(cfg)
        return (rows.start, rows.stop, cols.start, cols.stop), "mask"


def _sync(cand: Face, rows: np.ndarray, audio, syncnet, public, max_offset: int) -> dict[str, float]:
    out: dict[str, float] = {}
    if syncnet is not None:
        windows = len(cand.frames) - syncnet.cfg.sync_frames + 1
        lse = metrics.lse_ours(syncnet, cand.frames, rows, min(max_offset, windows - 1))
        out.update(lse.as_dict())
    if public is not None and audio is not None:
        windows = min(len(cand.frames), len(audio) // 640) - 4
        lse = metrics.lse_public(public, cand.frames, audio, min(max_offset, windows - 1))
        out.update({f"public_{k}": v for k, v in lse.as_dict().items()})
    return out


def _activity(cand: Face, audio) -> dict[str, float]:
    if audio is None:
        return dict.fromkeys(("mouth_audio_corr", "silence_ratio", "silent_opening", "speech_opening"), math.nan)
    env = metrics.audio_envelope(audio, contract.FPS, len(cand.frames))
    act = metrics.mouth_activity(cand.opening, env)
    return {"mouth_audio_corr": act["corr"], "silence_ratio": act["silence_ratio"],
            "silent_opening": act["silent_mean"], "speech_opening": act["speech_mean"]}


def score(cand: Face, source: Face, *, rows, audio, syncnet, public, max_offset: int,
          box=None, lpips_net=None) -> dict[str, float]:
    """All metrics of one candidate video against the source clip; ``box`` adds PSNR/SSIM (self)."""
    out: dict[str, float] = {}
    if box is not None:
        out.update(psnr=metrics.psnr(cand.frames, source.frames), ssim=metrics.ssim(cand.frames, source.frames),
                   mouth_psnr=metrics.psnr(cand.frames, source.frames, box=box),
                   mouth_ssim=metrics.ssim(cand.frames, source.frames, box=box))
        if lpips_net is not None:
            from pipelines.metrics.lpips import lpips

            y0, y1, x0, x1 = box
            out.update(lpips=lpips(cand.frames, source.frames, lpips_net),
                       mouth_lpips=lpips(cand.frames[:, y0:y1, x0:x1], source.frames[:, y0:y1, x0:x1], lpips_net))
    out.update(_sync(cand, rows, audio, syncnet, public, max_offset))
    ident = metrics.identity_scores(cand.frames, source.frames, generated_desc=cand.descriptors,
                                    source_desc=source.descriptors)
    out.update(identity_distance=ident.distance, identity_cosine=ident.cosine,
               identity_frames=float(ident.frames))
    out.update(_activity(cand, audio))
    return out


def average(per_clip: list[dict[str, dict[str, dict[str, float]]]]) -> dict[str, float]:
    """Per-clip {setting: {candidate: {metric: v}}} -> flat means over clips.

    Keys: ``<setting>.<metric>`` for the model, ``baseline.<name>.<setting>.<metric>`` for the
    baselines. NaN clips (no face found, no audio) are left out of a mean; all-NaN stays NaN.
    ``inf`` (a perfect PSNR) stays ``inf``.
    """
    values: dict[str, list[float]] = {}
    for clip in per_clip:
        for setting, cands in clip.items():
            for name, scores in cands.items():
                prefix = setting if name == "model" else f"baseline.{name}.{setting}"
                for metric, v in scores.items():
                    values.setdefault(f"{prefix}.{metric}", []).append(float(v))
    out = {}
    for key, vs in sorted(values.items()):
        finite = [v for v in vs if not math.isnan(v)]
        out[key] = float(np.mean(finite)) if finite else math.nan
    return out
