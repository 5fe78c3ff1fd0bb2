"""The main face by default: the longest-lasting track, not the largest face at the start.

A 2 s video of two real faces (face bank / astronaut): a smaller one on the left all along and a
~1.5x larger one on the right for the first 0.5 s only (then it slides out of view). A largest-face rule (the plain tracker)
takes the right face; the dub must follow the left one on every frame, and ``--face`` still picks
the right one where it is in view.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipelines.dub.analysis import analyse_faces, track_video
from pipelines.dub.main_face import KeyTrack, choose_main, link_tracks
from preprocessing.config import PreprocessConfig
from preprocessing.encode import encode_mp4
from preprocessing.faces import Box, DlibHogDetector
from preprocessing.media import probe
from preprocessing.synthetic.clip import boxes_from_landmarks, plan_clip
from preprocessing.synthetic.speech import SAMPLE_RATE
from tests.pipelines.dub.conftest import no_face_frames, read_all

N, BIG_FRAMES, HALF = 50, 12, 320


def _centred(seed: int, identity: int, face_frac: float):
    """A 320x360 talking head whose face stays centred in its frame (for side-by-side composition)."""
    plan = plan_clip(seed, seconds=N / 25, size=(HALF, 360), fps=25.0, identity=identity, face_frac=face_frac)
    box = boxes_from_landmarks(plan.landmarks())
    centre = (box[:, :2] + box[:, 2:]) / 2
    affines = plan.affines.copy()
    affines[:, :, 2] += np.array([HALF / 2, 170.0], np.float32) - centre
    return dataclasses.replace(plan, affines=affines)


def _walk_out(face: np.ndarray, background: np.ndarray, t: int) -> np.ndarray:
    """The big face in place until BIG_FRAMES, then sliding out to the right over ~8 frames
    (a gradual exit: an abrupt one is a shot change, and tracks never cross those)."""
    dx = max(0, t - BIG_FRAMES + 1) * 40
    if dx >= HALF:
        return background
    out = background.copy()
    out[:, dx:] = face[:, :HALF - dx]
    return out


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    small, big = _centred(1, 0, 0.3), _centred(2, 1, 0.5)
    background = [f[:, :HALF] for f in no_face_frames(N)]
    frames = [np.concatenate([s, _walk_out(b, background[t], t)], axis=1)
              for t, (s, b) in enumerate(zip(small.frames(), big.frames(), strict=True))]
    path = tmp_path_factory.mktemp("two") / "two_faces.mp4"
    encode_mp4(frames, 25.0, path, audio=small.audio, sample_rate=SAMPLE_RATE)
    return path


def _centres_x(landmarks: np.ndarray) -> np.ndarray:
    return landmarks[..., 0].mean(-1)


@pytest.mark.slow
def test_default_follows_the_longest_lasting_face_not_the_largest(two_faces):
    info, pre = probe(two_faces), PreprocessConfig()
    first = read_all(two_faces, 25.0)[0]
    largest = max(DlibHogDetector().detect(first), key=lambda b: b.size)
    assert (largest.x0 + largest.x1) / 2 > HALF  # the larger face is the right one, on decoded media
    plain, _, scale, _, _ = track_video(two_faces, info, 25.0, pre)
    assert plain.valid[0] and _centres_x(plain.landmarks[0]) / scale > HALF  # a largest-face rule takes it

    analysis = analyse_faces(two_faces, info, 25.0, pre, None, 0.06, 5)
    assert analysis.usable.mean() >= 0.9 and analysis.usable[:BIG_FRAMES].mean() >= 0.8
    assert (_centres_x(analysis.landmarks[analysis.usable]) < HALF).all()  # the left face, all along


@pytest.mark.slow
def test_face_point_still_picks_the_short_lived_face(two_faces):
    analysis = analyse_faces(two_faces, probe(two_faces), 25.0, PreprocessConfig(), (480.0, 180.0), 0.06, 5)
    assert analysis.usable[:BIG_FRAMES].mean() >= 0.8
    assert (_centres_x(analysis.landmarks[analysis.usable]) > HALF).all()
    assert not analysis.usable[-10:].any()  # long gone from view: passed through, never swapped


def _box(x: float, size: float) -> Box:
    return Box(x, 100.0, x + size, 100.0 + size)


def test_longest_track_wins_and_near_ties_go_to_the_larger_face():
    # keyframes every 10 frames: a small face on 0..90, a large one on 0..20
    boxes = {f: [_box(50, 80)] + ([_box(400, 150)] if f <= 20 else []) for f in range(0, 100, 10)}
    tracks = link_tracks(boxes, cuts=[], max_gap=30)
    assert sorted(t.span for t in tracks) == [21, 91]
    main, = choose_main(tracks)
    assert main.frames[0] == 0 and main.span == 91 and main.boxes[0][0] == 50
    near_tie = [KeyTrack(list(range(0, 91, 10)), [_box(50, 80).as_array()] * 10),
                KeyTrack([*range(0, 81, 10), 85], [_box(400, 150).as_array()] * 10)]
    assert choose_main(near_tie)[0].boxes[0][0] == 400  # 86 vs 91 frames: the larger face


def test_tracks_never_cross_a_cut_and_each_shot_has_its_main_face():
    boxes = {f: [_box(50 if f < 50 else 400, 100)] for f in range(0, 100, 10)}
    tracks = link_tracks(boxes, cuts=[50], max_gap=30)
    assert [(t.shot, t.frames[0], t.frames[-1]) for t in choose_main(tracks)] == [(0, 0, 40), (1, 50, 90)]
