"""Similarity alignment of a face to a canonical crop, and paste-back.

The transform is fitted on stable points (eyes, nose, mouth corners with low weight) and then
smoothed over time in (log scale, angle, source position of the crop centre): smoothing the
points alone would still let the crop shake with every lip movement.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from iptalker_model.mask import TEMPLATE
from preprocessing.config import AlignConfig

# ArcFace 112x112 five-point template (eye centres, nose tip, mouth corners), normalised to [0, 1]
_ARCFACE_5 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                       [41.5493, 92.3655], [70.7299, 92.2041]], np.float64) / 112.0
_WEIGHTS = np.array([1.0, 1.0, 1.0, 0.3, 0.3])  # mouth corners move while talking: low weight
_INTERP = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}


def template_record(cfg: AlignConfig) -> dict:
    """Which template the crops follow (``dataset.json`` records it; training compares it with the
    template the model's lower-face mask is drawn for, ``iptalker_model.mask.TEMPLATE``)."""
    return {"name": TEMPLATE["name"], "version": TEMPLATE["version"],
            "scale": cfg.template_scale, "shift_y": cfg.template_shift_y}


def template_points(cfg: AlignConfig) -> np.ndarray:
    """[5, 2] float64 target positions of the five points in the crop (pixels)."""
    pts = 0.5 + (_ARCFACE_5 - 0.5) * cfg.template_scale
    pts[:, 1] += cfg.template_shift_y
    return pts * cfg.size


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """[..., 68, 2] -> [..., 5, 2]: eye centres, nose tip, mouth corners (iBUG 68 indexing)."""
    return np.stack([landmarks[..., 36:42, :].mean(-2), landmarks[..., 42:48, :].mean(-2),
                     landmarks[..., 30, :], landmarks[..., 48, :], landmarks[..., 54, :]], axis=-2)


def fit_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares similarity (Umeyama, no reflection) mapping src [N, 2] -> dst [N, 2]: [2, 3]."""
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s, d = src - mu_s, dst - mu_d
    cov = (d * w[:, None]).T @ s  # [2, 2]
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    var = (w * (s ** 2).sum(1)).sum()
    scale = (sig * np.diag(sign)).sum() / max(var, 1e-12)
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def _to_params(affines: np.ndarray, size: int) -> np.ndarray:
    """[T, 2, 3] crop <- source -> [T, 4] (log scale, angle, source x, source y of the crop centre)."""
    a, b = affines[:, 0, 0], affines[:, 1, 0]
    scale, angle = np.hypot(a, b), np.unwrap(np.arctan2(b, a))
    centre = np.array([size / 2, size / 2])
    src_centre = np.stack([transform_points(centre, invert_affine(m)) for m in affines])
    return np.column_stack([np.log(scale), angle, src_centre])


def _from_params(params: np.ndarray, size: int) -> np.ndarray:
    scale, angle = np.exp(params[:, 0]), params[:, 1]
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)  # [T, 2, 2]
    t = size / 2 - np.einsum("tij,tj->ti", rot, params[:, 2:4])
    return np.concatenate([rot, t[:, :, None]], axis=2)


def estimate_transforms(landmarks: np.ndarray, cfg: AlignConfig, valid: np.ndarray | None = None) -> np.ndarray:
    """landmarks [T, 68, 2] (source pixels) -> [T, 2, 3] float32 crop <- source, smoothed over time.

    Frames marked invalid take the transform of the nearest valid frame (so they warp somewhere sane).
    """
    n = len(landmarks)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    if n == 0 or not valid.any():
        return np.tile(np.eye(2, 3, dtype=np.float32), (n, 1, 1))
    dst = template_points(cfg)
    pts = five_points(landmarks.astype(np.float64))
    good = np.flatnonzero(valid)
    fitted = np.stack([fit_similarity(pts[i], dst, _WEIGHTS) for i in good])
    params = _to_params(fitted, cfg.size)  # [V, 4]
    params = params[np.clip(np.searchsorted(good, np.arange(n)), 0, len(good) - 1)]  # [T, 4]: gaps copy a neighbour
    if cfg.smooth_sigma > 0 and n > 1:
        params = gaussian_filter1d(params, cfg.smooth_sigma, axis=0, mode="nearest")
    return _from_params(params, cfg.size).astype(np.float32)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """[2, 3] -> [2, 3] inverse (source <- crop for a crop <- source transform)."""
    return cv2.invertAffineTransform(np.asarray(affine, np.float64))


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply [2, 3] to points [..., 2]."""
    affine = np.asarray(affine)
    return points @ affine[:, :2].T + affine[:, 2]


def warp_to_crop(frame: np.ndarray, affine: np.ndarray, size: int, interpolation: str = "linear") -> np.ndarray:
    """[H, W, 3] uint8 -> aligned crop [size, size, 3] uint8 (edges replicated outside the frame)."""
    return cv2.warpAffine(frame, np.asarray(affine, np.float64), (size, size), flags=_INTERP[interpolation],
                          borderMode=cv2.BORDER_REPLICATE)


def crop_bounds(affine: np.ndarray, size: int, frame_hw: tuple[int, int], margin: float = 0.15) -> tuple[int, int, int, int]:
    """Source box (x0, y0, x1, y1) the crop of `affine` samples from, grown by `margin` x its side.

    Lets a caller keep only this region of each frame until the smoothed transform is known.
    """
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    src = transform_points(corners, invert_affine(affine))
    lo, hi = src.min(0), src.max(0)
    pad = margin * (hi - lo)
    h, w = frame_hw
    x0, y0 = np.clip(np.floor(lo - pad), 0, [w, h]).astype(int)
    x1, y1 = np.clip(np.ceil(hi + pad), 0, [w, h]).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def shift_affine(affine: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """crop <- source transform -> crop <- region whose top-left corner is source (x0, y0)."""
    out = np.array(affine, np.float64)
    out[:, 2] += out[:, :2] @ np.array([x0, y0], np.float64)
    return out


def paste_back(frame: np.ndarray, crop: np.ndarray, affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend `crop` [S, S, 3] back into a copy of `frame` [H, W, 3] through `mask` [S, S] in [0, 1]
    (the model's lower-face mask at the crop size: ``iptalker_model.mask.lower_face_mask(cfg, size=S)``).

    Only the bounding box of the mask's nonzero pixels, mapped into the frame, is warped and
    blended (for the lower-face mask a ninth of the crop's area: ~8x faster at 1080p than the
    whole crop). Pixels outside the mask are never written.
    """
    out = frame.copy()
    ys, xs = np.nonzero(mask > 0)
    if not len(xs):
        return out
    bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    inv = invert_affine(affine)  # source <- crop
    corners = transform_points(np.array([[bx0, by0], [bx1, by0], [bx0, by1], [bx1, by1]], np.float64), inv)
    h, w = frame.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, [w, h])
    if x1 <= x0 or y1 <= y0:
        return out
    shift = inv.copy()
    shift[:, 2] -= (x0, y0)  # roi <- crop
    roi_size = (int(x1 - x0), int(y1 - y0))
    warped = _upsampled_warp(crop, shift, roi_size)
    alpha = cv2.warpAffine(mask.astype(np.float32), shift, roi_size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    region = out[y0:y1, x0:x1]
    region[:] = cv2.blendLinear(warped, region, alpha, 1.0 - alpha)  # SIMD, rounds like +0.5
    return out


def _upsampled_warp(crop: np.ndarray, affine: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.warpAffine(crop, affine, size)`` magnifying a small crop [S, S, 3]: a bicubic resize to
    about the frame's scale, then a bilinear warp (OpenCV's bicubic warp is ~6x slower at 1080p)."""
    up = int(round(np.sqrt(abs(np.linalg.det(affine[:, :2])))))
    if up <= 1:
        return cv2.warpAffine(crop, affine, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    s = crop.shape[0]
    big = cv2.resize(crop, (s * up, s * up), interpolation=cv2.INTER_CUBIC)
    lin = affine[:, :2] / up  # pixel centres: u = (u_up + 0.5) / up - 0.5
    shift = np.concatenate([lin, (affine[:, 2] + affine[:, :2] @ np.full(2, 0.5 / up - 0.5))[:, None]], 1)
    return cv2.warpAffine(big, shift, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
