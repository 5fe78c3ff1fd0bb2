"""Face tracking on real decoded video (astronaut photo clips encoded with ffmpeg)."""

from __future__ import annotations

import numpy as np
import pytest

from preprocessing.config import FaceConfig
from preprocessing.faces import Box, DlibHogDetector, FaceTracker, smooth_track, track_faces
from preprocessing.media import iter_frames
from tests.fixtures.media import astronaut_frame, make_testsrc_clip, still_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    return {
        "one": still_clip(d / "one.mp4", astronaut_frame(face_height=360), seconds=2, motion_px=20),
        "two": still_clip(d / "two.mp4", astronaut_frame(face_height=360, n_faces=2), seconds=1),
        "none": make_testsrc_clip(d / "none.mp4", size="640x360", rate=25, seconds=1),
    }


def _frames(path):
    return np.concatenate([f for _, f in iter_frames(path)])  # [T, H, W, 3] uint8 RGB


def test_one_face_is_tracked_on_every_frame(clips):
    frames = _frames(clips["one"])
    track = track_faces(iter_frames(clips["one"]), FaceConfig(detect_every=10))
    assert len(track) == len(frames) == 50
    assert track.valid.all()
    np.testing.assert_array_equal(track.keyframes, np.arange(0, 50, 10))
    assert (track.face_counts == 1).all()
    assert track.landmarks.shape == (50, 68, 2) and track.landmarks.dtype == np.float32
    # the face is in the middle of the frame and ~130 px wide (jaw to jaw)
    assert 560 < track.landmarks[:, 30, 0].mean() < 720
    assert 100 < float(np.median(track.face_size)) < 200


def test_tracked_landmarks_match_per_frame_detection(clips):
    """Between keyframes the landmarks follow the face as well as a fresh detection would."""
    frames = _frames(clips["one"])
    cfg = FaceConfig(detect_every=10, smooth_sigma=0.0)
    tracked = track_faces([frames], cfg)
    every = track_faces([frames], FaceConfig(detect_every=1, smooth_sigma=0.0))
    err = np.linalg.norm(tracked.landmarks - every.landmarks, axis=-1).mean()
    assert err < 2.0  # pixels, on a ~130 px face


def test_smoothing_reduces_jitter_without_lag(clips):
    frames = _frames(clips["one"])
    raw = track_faces([frames], FaceConfig(smooth_sigma=0.0))
    smooth = smooth_track(raw, 1.0)
    jitter = lambda t: np.abs(np.diff(t.landmarks, 2, axis=0)).mean()  # noqa: E731
    assert jitter(smooth) < jitter(raw)
    assert np.abs(smooth.landmarks - raw.landmarks).mean() < 1.5


def test_two_faces_are_counted(clips):
    track = track_faces(iter_frames(clips["two"]), FaceConfig())
    assert (track.face_counts == 2).all()
    assert track.valid.all()  # the main (largest) face is still tracked


def test_no_face_gives_empty_track(clips):
    track = track_faces(iter_frames(clips["none"]), FaceConfig(detect_every=5))
    assert not track.valid.any() and (track.face_counts == 0).all()
    assert (track.face_size == 0).all()


class _FixedDetector:
    """A stand-in for a future GPU detector: returns one given box (the Protocol is all callers see)."""

    def __init__(self, box: Box):
        self.box, self.calls = box, 0

    def detect(self, frame_rgb):
        self.calls += 1
        return [self.box]


def test_detector_is_pluggable(clips):
    frames = _frames(clips["one"])
    hog = DlibHogDetector().detect(frames[0])
    assert len(hog) == 1
    fixed = _FixedDetector(hog[0])
    track = track_faces([frames[:20]], FaceConfig(detect_every=10), detector=fixed)
    assert fixed.calls == 2 and track.valid.all()


def test_restart_forces_detection_at_a_cut(clips):
    frames = _frames(clips["one"])
    tracker = FaceTracker(FaceConfig(detect_every=100))
    first = tracker.track(frames[:7])
    tracker.restart()
    second = tracker.track(frames[7:14])
    assert list(first.keyframes) == [0] and list(second.keyframes) == [0]


def test_landmarks_follow_a_synthetic_talking_head(tmp_path):
    """Generator ground truth (drawn landmarks, moving head, moving mouth) after a real encode/decode."""
    from preprocessing.encode import encode_mp4
    from preprocessing.synthetic.corpus import render_clip

    clip = render_clip(5, seconds=2.0, size=(640, 360), fps=25, identity=2)
    encode_mp4(clip.frames, clip.fps, tmp_path / "talk.mp4", audio=clip.audio)
    track = track_faces(iter_frames(tmp_path / "talk.mp4"), FaceConfig())
    assert track.valid.all() and (track.face_counts == 1).all()
    err = np.linalg.norm(track.landmarks - clip.landmarks, axis=-1)  # [T, 68] px
    width = np.linalg.norm(clip.landmarks[:, 16] - clip.landmarks[:, 0], axis=-1)
    assert np.median(err) < 0.05 * width.mean()
    np.testing.assert_allclose(np.median(track.face_size), np.median(width), rtol=0.15)
