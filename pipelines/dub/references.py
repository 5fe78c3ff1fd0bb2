"""Reference frames for dubbing: K frames of the same face, spread over mouth openness and close
to the video's typical pose (so the model sees the mouth both closed and open, from the angle it
must draw). A pure function of landmarks, so another selection (e.g. training's) can replace it.
"""

from __future__ import annotations

import numpy as np

_UPPER_INNER, _LOWER_INNER = [61, 62, 63], [67, 66, 65]  # iBUG 68 inner-lip pairs
_CORNERS = (48, 54)


def mouth_openness(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap / mouth width: [N, 68, 2] -> [N] float (0 = closed)."""
    lm = np.asarray(landmarks, np.float64)
    gap = np.linalg.norm(lm[:, _UPPER_INNER] - lm[:, _LOWER_INNER], axis=-1).mean(-1)
    width = np.linalg.norm(lm[:, _CORNERS[0]] - lm[:, _CORNERS[1]], axis=-1)
    return gap / np.maximum(width, 1e-6)


def pose_proxy(landmarks: np.ndarray) -> np.ndarray:
    """Yaw and pitch proxies from aligned landmarks: [N, 68, 2] -> [N, 2].

    yaw: nose tip offset from the eyes' midpoint / inter-ocular distance; pitch: nose tip height
    between the eyes and the mouth. Roll and scale are already removed by the alignment.
    """
    lm = np.asarray(landmarks, np.float64)
    left, right = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)
    eyes = (left + right) / 2
    iod = np.maximum(np.linalg.norm(right - left, axis=-1), 1e-6)
    nose, mouth = lm[:, 30], lm[:, [48, 54]].mean(1)
    yaw = (nose[:, 0] - eyes[:, 0]) / iod
    pitch = (nose[:, 1] - eyes[:, 1]) / np.maximum(mouth[:, 1] - eyes[:, 1], 1e-6)
    return np.stack([yaw, pitch], 1)


def select_references(landmarks: np.ndarray, usable: np.ndarray, k: int,
                      pose_keep: float = 0.5) -> np.ndarray:
    """Pick K reference frames: [N, 68, 2] landmarks in the aligned crop, usable [N] bool -> [K] indices.

    Keeps the ``pose_keep`` fraction of usable frames closest to the median pose, then takes the
    frame nearest to each of K evenly spaced openness quantiles (closed ... open). With fewer
    usable frames than K, frames repeat. Raises ValueError when no frame is usable.
    """
    idx = np.flatnonzero(usable)
    if len(idx) == 0:
        raise ValueError("no usable face frame to take references from")
    pose = pose_proxy(landmarks[idx])
    dist = np.linalg.norm(pose - np.median(pose, 0), axis=1)
    keep = max(k, int(np.ceil(pose_keep * len(idx))))
    cand = idx[np.argsort(dist, kind="stable")[:keep]]
    opening = mouth_openness(landmarks[cand])
    order = np.argsort(opening, kind="stable")
    picks: list[int] = []
    for q in np.linspace(0.0, 1.0, k):
        pos = int(round(q * (len(order) - 1)))
        for step in range(len(order)):  # nearest not yet taken, outward from the quantile
            for j in (pos - step, pos + step):
                if 0 <= j < len(order) and cand[order[j]] not in picks:
                    picks.append(int(cand[order[j]]))
                    break
            else:
                continue
            break
        else:
            picks.append(int(cand[order[pos]]))  # fewer candidates than K: repeat
    return np.sort(np.array(picks[:k], np.int64))
