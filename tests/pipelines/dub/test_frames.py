"""Pass 2's frame source against decord's random access, on real decoded media, and pass 1's memory."""

from __future__ import annotations

import numpy as np

from pipelines.dub.analysis import analyse_faces
from pipelines.dub.frames import StreamingFrames
from pipelines.dub.timeline import plan_timeline
from preprocessing.config import PreprocessConfig
from preprocessing.media import FrameReader, probe


def test_streaming_frames_match_decord_in_every_timeline_order(video_30fps):
    info = probe(video_30fps)
    reader = FrameReader(video_30fps, 30.0, info=info)
    n = len(reader)
    for mode in ("bounce", "loop", "freeze"):  # forward, backward (ping-pong), jumps to 0, repeats
        source = plan_timeline(n, 2 * n + 7, mode).source
        frames = StreamingFrames(video_30fps, info, 30.0, reader.source_indices)
        try:
            for start in range(0, len(source), 16):
                idx = source[start:start + 16]
                np.testing.assert_array_equal(frames.get(idx), reader.get(idx))
            assert frames._cap is not None  # served by OpenCV, not by the decord fallback
        finally:
            frames.close()


def test_pass_1_keeps_numbers_not_frames(video_30fps):
    """What pass 1 returns for the whole video is per-frame numbers: under 2 KB a frame (a 640x360
    frame is 691 KB), so a long video costs no frame memory after it."""
    info = probe(video_30fps)
    analysis = analyse_faces(video_30fps, info, 30.0, PreprocessConfig(), None, 0.06, 5)
    arrays = [v for v in vars(analysis).values() if isinstance(v, np.ndarray)]
    assert analysis.usable.sum() > 0.8 * analysis.n_frames
    assert sum(a.nbytes for a in arrays) / analysis.n_frames < 2048
