"""Real, distinct faces for the synthetic talking heads: the face bank.

Identity tests (clustering, identity-disjoint splits) need several different real people; one
photo with colour grades is one person to a face-recognition model. The insightface 2.1 wheel on
PyPI (library code MIT-licensed) ships two sample photos in ``insightface/data/images/``:
``t1.jpg`` (six people, faces ~110 px) and ``Tom_Hanks_54745.png`` (an aligned 112 px face).
``make setup`` downloads that wheel (``pip download --no-deps``; it is never installed nor
imported) and extracts only those two images into ``.cache/facebank/``; the photos serve tests
and the demo only. Without them the generator falls back to scikit-image's astronaut alone.

    python -m preprocessing.synthetic.facebank fetch --cache .cache   # what make setup runs
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

from preprocessing.checksum import file_sha256
from preprocessing.dlib_models import hog_detector, landmark_predictor

log = logging.getLogger(__name__)

WHEEL = "insightface-2.1-py3-none-any.whl"
WHEEL_SHA256 = "dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399"
IMAGES = {  # name in the wheel -> sha256 of the file
    "insightface/data/images/t1.jpg": "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
    "insightface/data/images/Tom_Hanks_54745.png": "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083",
}
ENV = "IPTALKER_FACE_BANK"  # overrides the cache folder


def bank_dir() -> Path:
    """Where the extracted photos live: $IPTALKER_FACE_BANK, else <repo>/.cache/facebank."""
    env = os.environ.get(ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".cache" / "facebank"


def extract(wheel: Path, out: Path) -> list[Path]:
    """Copy only the bank's photos out of the wheel (atomic per file); checks the wheel's hash."""
    if file_sha256(wheel) != WHEEL_SHA256:
        raise RuntimeError(f"{wheel}: sha256 differs from the pinned insightface 2.1 wheel")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheel) as zf:
        for name, digest in IMAGES.items():
            data = zf.read(name)
            if hashlib.sha256(data).hexdigest() != digest:
                raise RuntimeError(f"{wheel}: {name} differs from the pinned photo")
            target = out / Path(name).name
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
            written.append(target)
    return written


def fetch(cache: Path) -> Path:
    """pip-download the wheel into cache/wheels (no deps, no install) and extract the photos into
    cache/facebank. Idempotent: nothing is downloaded when the photos are there."""
    out = cache / "facebank"
    if all((out / Path(n).name).exists() for n in IMAGES):
        return out
    wheels = cache / "wheels"
    if not (wheels / WHEEL).exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "insightface==2.1",
                        "-d", str(wheels)], check=True, timeout=600)
    extract(wheels / WHEEL, out)
    return out


# --- faces ---------------------------------------------------------------------------------------
TEMPLATE_JAW = 185.0  # jaw width in template pixels (the astronaut template's; the mouth warp is tuned to it)


def _landmarks(image: np.ndarray, upsample: int = 1) -> list[tuple[np.ndarray, object]]:
    """[(landmarks [68, 2] float32, dlib rect)] of every face HOG finds, left to right."""
    faces = sorted(hog_detector()(image, upsample), key=lambda r: r.left())
    out = []
    for rect in faces:
        shape = landmark_predictor()(image, rect)
        out.append((np.array([[p.x, p.y] for p in shape.parts()], np.float32), rect))
    return out


def face_template(photo: np.ndarray, landmarks: np.ndarray,
                  margin: float = 1.0) -> tuple[np.ndarray, np.ndarray, bool]:
    """Crop one face with `margin` x its jaw width of context on each side (borders replicated
    where the photo ends), upscaled so the jaw is TEMPLATE_JAW px. Returns (image [H, W, 3] uint8
    RGB, landmarks [68, 2] float32 re-measured by dlib on the upscaled crop, whether the photo
    holds the whole face: ``face.whole_face`` of the photo's own landmarks)."""
    from preprocessing.synthetic.face import whole_face

    jaw = float(np.linalg.norm(landmarks[16] - landmarks[0]))
    cx, cy = landmarks[:, 0].mean(), landmarks[:, 1].mean()
    half = (0.5 + margin) * jaw
    x0, y0 = int(round(cx - half)), int(round(cy - 1.15 * half))
    side = int(round(2 * half))
    pad = side
    padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = padded[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    scale = TEMPLATE_JAW / jaw
    image = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    found = _landmarks(image, upsample=0)
    if len(found) != 1:
        raise RuntimeError(f"face bank: expected one face in the upscaled crop, dlib found {len(found)}")
    return image, found[0][0], whole_face(landmarks, *photo.shape[:2])


def _blur_others(photo: np.ndarray, rects: list) -> np.ndarray:
    """The group photo with the other people's faces blurred beyond detection (a crop with margin
    would otherwise hold a second face)."""
    out = photo.copy()
    for r in rects:
        pad = int(0.35 * r.width())
        x0, y0 = max(r.left() - pad, 0), max(r.top() - pad, 0)
        x1, y1 = min(r.right() + pad, photo.shape[1]), min(r.bottom() + pad, photo.shape[0])
        out[y0:y1, x0:x1] = cv2.GaussianBlur(out[y0:y1, x0:x1], (0, 0), 0.3 * r.width())
    return out


@functools.cache
def bank_faces() -> tuple[tuple[str, np.ndarray, np.ndarray, bool], ...]:
    """The bank's people as (name, image, landmarks, whole face), in a fixed order: t1_0..t1_5
    (left to right in t1.jpg), tom_hanks (not whole: his crop ends at the chin). Empty (with a
    warning) when the photos are not there."""
    root = bank_dir()
    t1, hanks = root / "t1.jpg", root / "Tom_Hanks_54745.png"
    if not (t1.exists() and hanks.exists()):
        log.warning("face bank not found in %s (run `make setup`): synthetic videos use the astronaut "
                    "photo only, so every identity is one real person", root)
        return ()
    out = []
    group = cv2.cvtColor(cv2.imread(str(t1)), cv2.COLOR_BGR2RGB)
    faces = _landmarks(group)
    for i, (lm, _) in enumerate(faces):
        alone = _blur_others(group, [rect for j, (_, rect) in enumerate(faces) if j != i])
        out.append((f"t1_{i}", *face_template(alone, lm)))
    tom = cv2.cvtColor(cv2.imread(str(hanks)), cv2.COLOR_BGR2RGB)
    tom = cv2.resize(tom, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)  # 112 px: too small for HOG
    lm = _landmarks(tom)
    if lm:
        out.append(("tom_hanks", *face_template(tom, lm[0][0])))
    for _, image, landmarks, _ in out:
        image.setflags(write=False)
        landmarks.setflags(write=False)
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fetch the face bank photos (insightface 2.1 wheel)")
    ap.add_argument("command", choices=["fetch"])
    ap.add_argument("--cache", type=Path, default=Path(".cache"))
    args = ap.parse_args(argv)
    out = fetch(args.cache)
    print(f"face bank: {', '.join(sorted(p.name for p in out.iterdir() if not p.name.startswith('.')))} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
