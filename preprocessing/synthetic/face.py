"""The face of the synthetic talking heads: a real photo (scikit-image's astronaut, or a face-bank
person: see facebank.py), its 68 dlib landmarks, a mouth that opens by a smooth displacement
warp, and per-identity colour grading.

A real photo (rather than a drawn face) keeps dlib, the aligner and the model honest: they see
real skin, eyes and teeth. The picture ships inside scikit-image, so nothing is downloaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from skimage import data as skdata

from preprocessing.dlib_models import hog_detector, landmark_predictor

_MOUTH_DARK = (70, 22, 28)  # RGB of the mouth interior
_TEETH = (228, 222, 208)  # RGB of the hint of upper teeth


@dataclass(frozen=True)
class FaceTemplate:
    """The photo the heads are rendered from, with its landmarks in the same pixel frame."""

    image: np.ndarray  # [H, W, 3] uint8 RGB (astronaut head and shoulders, upscaled 2x)
    landmarks: np.ndarray  # [68, 2] float32 x, y in image pixels
    name: str = "astronaut"  # the real person in the photo (face bank name)
    whole: bool = True  # the photo holds the whole face (see ``whole_face``)

    @property
    def box(self) -> np.ndarray:
        """Landmark bounding box x0, y0, x1, y1 -> [4] float32."""
        lm = self.landmarks
        return np.array([*lm.min(0), *lm.max(0)], np.float32)


@functools.cache
def astronaut_template() -> FaceTemplate:
    """scikit-image's astronaut, top 300 rows (her suit patch fools HOG), upscaled 2x.

    The 2x upscale lets 480p-720p frames be rendered without further enlargement, so the mouth
    warp happens at roughly output resolution. Landmarks come from dlib once per process.
    """
    image = cv2.resize(
        skdata.astronaut()[:300], None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC
    )
    faces = hog_detector()(image, 0)
    if len(faces) != 1:
        raise RuntimeError(f"expected one face in the astronaut template, dlib found {len(faces)}")
    shape = landmark_predictor()(image, faces[0])
    lm = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
    image.setflags(write=False)
    lm.setflags(write=False)
    return FaceTemplate(image=image, landmarks=lm, whole=whole_face(lm, *image.shape[:2]))


def whole_face(landmarks: np.ndarray, height: int, width: int, jaw_room: float = 0.1) -> bool:
    """Does a photo [height, width] hold the whole face of its 68 landmarks [68, 2] (pixels), with
    ``jaw_room`` x the jaw width below the lowest point for the jaw to drop into?

    Why: a truncated face cannot be animated or measured honestly. Tom Hanks's photo in the face
    bank is a 112 px aligned crop that ends at his chin: dlib guesses five jaw points outside it
    and the opening mouth is rendered into replicated border pixels (closed -> fully open changes
    his aligned 64 px lower face by 2.6-2.9 grey levels on average, the other people's by 5-19)."""
    lm = np.asarray(landmarks, np.float64)
    jaw = float(np.linalg.norm(lm[16] - lm[0]))
    inside = (lm[:, 0] >= 0).all() and (lm[:, 0] < width).all() and (lm[:, 1] >= 0).all()
    return bool(inside and lm[:, 1].max() + jaw_room * jaw < height)


def grade_colours(
    image: np.ndarray,
    hue_shift: float,
    saturation: float,
    gamma: float,
    gains: tuple[float, float, float],
) -> np.ndarray:
    """Colour grade [..., 3] uint8 RGB: hue shift (OpenCV units, 180 = full turn), saturation
    scale, gamma, per-channel gains. Same shape and dtype out."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image).reshape(-1, 1, 3), cv2.COLOR_RGB2HSV).astype(
        np.float32
    )
    hsv[..., 0] = (hsv[..., 0] + hue_shift) % 180.0
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255.0
    rgb = np.clip(rgb**gamma * np.asarray(gains, np.float32), 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype(np.uint8).reshape(image.shape)


@dataclass(frozen=True)
class MouthRig:
    """Geometry of the jaw-drop warp, measured once from the template landmarks."""

    seam_y: float  # y between upper and lower inner lips: points below it move down
    centre_x: float  # mouth centre
    sigma_x: float  # horizontal fall-off of the displacement (jaw sides move less)
    chin_y: float  # below the chin the displacement decays (the neck is compressed)
    decay: float  # length of that decay, long enough to keep the map monotone
    max_open: float  # displacement at opening 1, in template pixels

    @staticmethod
    def from_landmarks(lm: np.ndarray) -> MouthRig:
        upper, lower = lm[61:64, 1].mean(), lm[65:68, 1].mean()
        mouth_w = float(lm[54, 0] - lm[48, 0])
        jaw_w = float(lm[13, 0] - lm[3, 0])
        chin = float(lm[8, 1])
        seam = float((upper + lower) / 2)
        return MouthRig(
            seam_y=seam,
            centre_x=float(lm[48:68, 0].mean()),
            sigma_x=0.35 * jaw_w,
            chin_y=chin,
            decay=1.4 * (chin - seam),
            max_open=0.27 * mouth_w,
        )

    def profile_y(self, y: np.ndarray) -> np.ndarray:
        """Vertical weight in [0, 1]: 0 above the seam, 1 from the lower lip to the chin, then 0."""
        rise = _smoothstep((y - (self.seam_y - 1.0)) / 2.0)
        fall = 1.0 - _smoothstep((y - self.chin_y) / self.decay)
        return rise * fall

    def weight_x(self, x: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * ((x - self.centre_x) / self.sigma_x) ** 2)

    def move_points(self, pts: np.ndarray, opening: float) -> np.ndarray:
        """Forward map of [N, 2] points (source -> opened mouth)."""
        amp = opening * self.max_open * self.weight_x(pts[:, 0])
        out = pts.astype(np.float32).copy()
        out[:, 1] += amp * self.profile_y(pts[:, 1])
        return out


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@functools.cache
def people() -> tuple[FaceTemplate, ...]:
    """Every real person the generator can animate: the astronaut first, then the face bank
    (six people of insightface's t1.jpg and Tom Hanks) when `make setup` has fetched it."""
    from preprocessing.synthetic.facebank import bank_faces

    return (astronaut_template(), *(FaceTemplate(image, lm, name, whole) for name, image, lm, whole in bank_faces()))


@functools.cache
def person_rig(person: int) -> MouthRig:
    return MouthRig.from_landmarks(people()[person].landmarks)


def template_rig() -> MouthRig:
    return person_rig(0)


def open_mouth(
    image: np.ndarray, landmarks: np.ndarray, opening: float, rig: MouthRig, palette: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Open the mouth of `image` by `opening` in [0, 1]; returns (new image, moved landmarks).

    image: [H, W, 3] uint8 RGB (not modified), landmarks [68, 2] in its pixels. The lower lip and
    jaw move down by a smooth displacement (cv2.remap on a region around the mouth only); the gap
    between the inner lips is then painted as a dark interior with a band of upper teeth.
    palette: [2, 3] uint8 RGB (interior, teeth), already colour-graded like the image.
    """
    moved = rig.move_points(landmarks, opening)
    if opening <= 1e-3:
        return image, moved
    h, w = image.shape[:2]
    x0 = int(max(0, rig.centre_x - 3 * rig.sigma_x))
    x1 = int(min(w, rig.centre_x + 3 * rig.sigma_x))
    y0 = int(max(0, rig.seam_y - 4))
    y1 = int(min(h, rig.chin_y + rig.decay + 4))
    out = image.copy()
    out[y0:y1, x0:x1] = _remap_region(image, (x0, y0, x1, y1), opening, rig)
    _paint_interior(out, moved[60:68], opening, palette)
    return out, moved


def _remap_region(
    image: np.ndarray, roi: tuple[int, int, int, int], opening: float, rig: MouthRig
) -> np.ndarray:
    """Inverse-map the ROI: per column y_out = y_src + a(x) * profile(y_src) is monotone in
    y_src, so it is inverted exactly with np.interp on a fine grid."""
    x0, y0, x1, y1 = roi
    xs = np.arange(x0, x1, dtype=np.float32)
    ys = np.arange(y0, y1, dtype=np.float32)
    src_grid = np.linspace(y0, y1, 4 * (y1 - y0), dtype=np.float32)
    prof = rig.profile_y(src_grid)
    amps = opening * rig.max_open * rig.weight_x(xs)
    map_y = np.empty((ys.size, xs.size), np.float32)
    for j, a in enumerate(amps):
        map_y[:, j] = np.interp(ys, src_grid + a * prof, src_grid)
    map_x = np.broadcast_to(xs[None, :], map_y.shape).astype(np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _paint_interior(
    image: np.ndarray, inner: np.ndarray, opening: float, palette: np.ndarray
) -> None:
    """Fill the inner-lip polygon [8, 2] (in place) dark, with upper teeth along its top edge."""
    x0, y0 = np.floor(inner.min(0)).astype(int) - 3
    x1, y1 = np.ceil(inner.max(0)).astype(int) + 4
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    shift = 4  # sub-pixel polygon precision for cv2.fillPoly
    poly = np.round((inner - [x0, y0]) * (1 << shift)).astype(np.int32)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [poly], 255, lineType=cv2.LINE_AA, shift=shift)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (3, 3), 0.8)
    alpha *= min(1.0, 3.0 * opening)  # a barely open mouth is only slightly darker

    upper_y = np.interp(np.arange(x0, x1), inner[[0, 1, 2, 3, 4], 0], inner[[0, 1, 2, 3, 4], 1])
    gap = float(inner[[5, 6, 7], 1].mean() - inner[[1, 2, 3], 1].mean())
    rows = np.arange(y0, y1, dtype=np.float32)[:, None]
    teeth = np.clip(1.0 - (rows - upper_y[None, :]) / max(0.3 * gap, 1.0), 0.0, 1.0)  # [h, w]
    colour = (
        palette[0][None, None, :].astype(np.float32) * (1 - teeth[..., None])
        + palette[1][None, None, :].astype(np.float32) * teeth[..., None]
    )
    region = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = (
        region * (1 - alpha[..., None]) + colour * alpha[..., None] + 0.5
    ).astype(np.uint8)


def mouth_palette(grade: dict | None = None) -> np.ndarray:
    """[2, 3] uint8 RGB (interior, teeth), graded with `grade_colours(**grade)` when given."""
    palette = np.array([[_MOUTH_DARK, _TEETH]], np.uint8)  # [1, 2, 3]
    if grade:
        palette = grade_colours(palette, **grade)
    return palette[0]
