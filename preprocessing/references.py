"""Which frames of a clip serve as the K reference frames for a target window.

One pure function for training (the shard loader) and dubbing, so both see the same kind of
references: frames from other times of the same clip (never the target window or its
neighbours, which would leak the answer), in a head pose like the target's (the warp then only
has to move the lips), spread over mouth openness (closed, half, wide: the model can pick the
mouth shape the audio asks for instead of inventing teeth and lips).
"""

from __future__ import annotations

import numpy as np

from preprocessing.config import ReferenceConfig

__all__ = ["ReferenceConfig", "mouth_aspect_ratio", "pose_descriptor", "select_references"]


def mouth_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip height over mouth width: [..., 68, 2] -> [...]; ~0 closed, ~0.5+ wide open."""
    lm = np.asarray(landmarks, np.float64)
    height = np.linalg.norm(lm[..., [61, 62, 63], :] - lm[..., [67, 66, 65], :], axis=-1).mean(-1)
    width = np.linalg.norm(lm[..., 54, :] - lm[..., 48, :], axis=-1)
    return height / np.maximum(width, 1e-6)


RIGID_POINTS = slice(17, 48)  # iBUG 68: brows, nose, eyes; not the jaw line, which drops as the mouth opens


def pose_descriptor(landmarks: np.ndarray) -> np.ndarray:
    """Scale- and position-free pose code from the rigid points (brows, nose, eyes):
    [..., 68, 2] -> [..., 2 * 31]. Points are centred on the eyes and divided by the inter-ocular
    distance, so a turn or tilt of the head moves the code and a zoom does not. The jaw line is
    left out: it moves with the mouth, and with it "a pose like the target's" meant a mouth as
    open as the target's, so the references carried the source's own speech into a dub (on a
    frontal held-out person the pasted mean of a window's references followed that window's own
    opening with r 0.67-0.76; without the jaw, -0.29 to -0.09)."""
    lm = np.asarray(landmarks, np.float64)
    rigid = lm[..., RIGID_POINTS, :]
    left, right = lm[..., 36:42, :].mean(-2), lm[..., 42:48, :].mean(-2)
    centre = (left + right) / 2
    scale = np.maximum(np.linalg.norm(right - left, axis=-1), 1e-6)
    return ((rigid - centre[..., None, :]) / scale[..., None, None]).reshape(*lm.shape[:-2], -1)


def select_references(landmarks: np.ndarray, target: np.ndarray | range | int, k: int,
                      cfg: ReferenceConfig | None = None,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """K reference frame indices for the target window.

    landmarks: [T, 68, 2] of the whole clip (any pixel unit); target: the window's frame indices
    (or one frame). Usable frames are farther than ``exclude_radius`` from the window (any frame
    outside it if that leaves fewer than K) and in the window's pose: their pose code is as close
    to the window's mean as that of the ``pose_fraction`` closest (at least K), or within
    ``pose_tolerance``. Every frame outside the window is sorted into K mouth-openness quantile
    bins, and each bin gives the usable frame nearest its median opening (a random usable frame of
    the bin with ``rng``: training sees varied references, dubbing is deterministic; the usable
    frames nearest the bin's opening when it has none). Returns int64 [K] sorted indices; repeats
    only when the clip has fewer than K frames outside the window.

    The bins are cut before the exclusion and the pose filter so that neither can tie the
    references' openness to the window's own: the excluded neighbours open and close with the
    window, and in an aligned crop the pose code moves a little with the jaw (ranking by pose
    differences that small picked frames as open as the window's). Cut after them, the
    references' mean opening moved with the window's by -0.18 to +0.13 per unit on the learning
    corpus and by +0.51 to +0.58 on its turned head; cut before, by -0.07 to -0.02 on every clip.
    The model takes the mouth's opening from references that carry one, so a dub inherited the
    source's own speech through them: on that turned head, under another clip's audio, the same
    weights followed the audio at r 0.36-0.39 with the old references and 0.75-0.78 with these.
    """
    cfg = cfg or ReferenceConfig()
    n = len(landmarks)
    window = np.atleast_1d(np.asarray(target, np.int64))
    lo, hi = int(window.min()), int(window.max())
    idx = np.arange(n)
    outside = (idx < lo) | (idx > hi)
    if not outside.any():
        raise ValueError(f"no frame outside the target window [{lo}, {hi}] in a {n}-frame clip")
    far = (idx < lo - cfg.exclude_radius) | (idx > hi + cfg.exclude_radius)
    if far.sum() < k:
        far = outside
    candidates = idx[far]
    if cfg.spread == "random":
        pick = (rng or np.random.default_rng(0)).choice(candidates, size=k, replace=len(candidates) < k)
        return np.sort(pick)
    mar = mouth_aspect_ratio(landmarks)                                   # [T]
    if len(candidates) < k:
        order = candidates[np.argsort(mar[candidates], kind="stable")]
        return np.sort(np.asarray([order[i % len(order)] for i in range(k)], np.int64))
    pose = pose_descriptor(landmarks)                                     # [T, P]
    distance = np.linalg.norm(pose - pose[window].mean(0), axis=-1)       # [T]
    keep = max(k, int(np.ceil(cfg.pose_fraction * len(candidates))))
    usable = far & (distance <= max(np.sort(distance[candidates])[keep - 1], cfg.pose_tolerance))  # >= K
    order = idx[outside]
    order = order[np.argsort(mar[order], kind="stable")]
    taken = np.zeros(n, bool)
    pick = []
    for b in np.array_split(order, k):
        centre = float(np.median(mar[b]))
        members = b[usable[b] & ~taken[b]]
        if len(members) == 0:  # no frame of the bin is usable: the usable frames nearest its opening
            free = idx[usable & ~taken]
            members = free[np.argsort(np.abs(mar[free] - centre), kind="stable")[:len(b)]]
        if rng is None:
            chosen = members[int(np.argmin(np.abs(mar[members] - centre)))]
        else:
            chosen = members[int(rng.integers(len(members)))]
        taken[chosen] = True
        pick.append(chosen)
    return np.sort(np.asarray(pick, np.int64))
