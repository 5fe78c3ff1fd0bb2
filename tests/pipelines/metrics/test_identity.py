"""dlib identity: the same face gives distance 0, another person's face > 0.6 (dlib's threshold),
a re-shot of the same face < 0.6, and frames are matched in time, not as all pairs."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from pipelines.metrics import face_descriptors, identity_scores
from pipelines.metrics.identity import SAME_PERSON_DISTANCE

REPO = Path(__file__).resolve().parents[3]
FACEBANK = REPO / ".cache" / "facebank" / "t1.jpg"  # six people (insightface's sample photo)


def astronaut_face(size: int = 160) -> np.ndarray:
    return cv2.resize(skdata.astronaut()[20:260, 130:330], (size, size), interpolation=cv2.INTER_AREA)


def other_people() -> list[np.ndarray]:
    """Square crops of the faces in the face bank photo; skips when it has not been fetched."""
    if not FACEBANK.is_file():
        pytest.skip(f"face bank photo missing: {FACEBANK} (populated by `make setup`)")
    from preprocessing.dlib_models import hog_detector

    img = cv2.imread(str(FACEBANK))[..., ::-1]
    rects = hog_detector()(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 1)
    crops = []
    for r in rects:
        cx, cy, half = (r.left() + r.right()) // 2, (r.top() + r.bottom()) // 2, int(r.width() * 0.8)
        crop = img[max(0, cy - half):cy + half, max(0, cx - half):cx + half]
        crops.append(cv2.resize(np.ascontiguousarray(crop), (160, 160), interpolation=cv2.INTER_AREA))
    assert len(crops) >= 4, "the face bank photo should show several people"
    return crops


def test_identical_videos_have_distance_zero():
    video = np.stack([astronaut_face(), astronaut_face()[:, ::-1].copy()])
    s = identity_scores(video, video)
    assert s.distance == 0.0 and s.cosine == pytest.approx(1.0) and s.frames == 2


def test_same_person_reshot_is_close_and_other_people_are_far():
    me = astronaut_face()
    reshot = cv2.resize(cv2.convertScaleAbs(me, alpha=0.85, beta=15)[8:152, 4:148], (160, 160))
    same = identity_scores(reshot[None], me[None])
    assert same.frames == 1 and same.distance < SAME_PERSON_DISTANCE
    for face in other_people():
        other = identity_scores(face[None], me[None])
        assert other.frames == 1 and other.distance > SAME_PERSON_DISTANCE, other


def test_frames_are_matched_in_time_not_as_all_pairs():
    people = other_people()
    a, b = people[0], people[1]
    source = np.stack([a, b])
    assert identity_scores(source, source).distance == 0.0
    swapped = identity_scores(np.stack([b, a]), source)            # every frame shows the wrong person
    assert swapped.distance > SAME_PERSON_DISTANCE


def test_frames_without_a_face_are_left_out_and_reported():
    blank = np.full((2, 96, 96, 3), 128, np.uint8)
    assert np.isnan(face_descriptors(blank)).all()
    s = identity_scores(blank, blank)
    assert s.frames == 0 and s.total == 2 and math.isnan(s.distance)
