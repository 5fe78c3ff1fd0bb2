"""Which face a dub follows when several are in view: the one whose track lasts longest.

The issue asks for the "largest, longest track": a face that is on screen for the whole video
matters more than a bigger one that passes through (a second speaker's cut-in, a passer-by). The
tracker alone would follow whichever face was largest when it first looked. So pass 1 records
every face its detector finds on keyframes (``FaceCensus``), links them into tracks per shot,
picks the track that spans most frames (tracks within ``TIE`` of the longest: the largest), and
when the tracker followed another face, tracks again guided to the chosen one (``GuidedDetector``).
Only per-keyframe boxes are kept (a few bytes a keyframe).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preprocessing.faces import Box, FaceDetector

TIE = 0.9  # tracks spanning at least this fraction of the longest count as equally long
SAME_FACE = 0.5  # boxes on consecutive keyframes are one face when their centres are this x size apart


class _Clocked:
    """A detector wrapper that knows the frame it is asked about (``clock()``: the tracker's frame)."""

    def __init__(self, inner: FaceDetector):
        self.inner, self.clock = inner, (lambda: 0)

    def __getattr__(self, name):  # reach(), ... of the wrapped detector
        return getattr(self.inner, name)


class FaceCensus(_Clocked):
    """Records every box the detector returns, per frame (the call with most boxes wins)."""

    def __init__(self, inner: FaceDetector):
        super().__init__(inner)
        self.boxes: dict[int, list[Box]] = {}

    def detect(self, frame_rgb: np.ndarray, *args, **kwargs) -> list[Box]:
        found = self.inner.detect(frame_rgb, *args, **kwargs)
        frame = self.clock()
        if len(found) >= len(self.boxes.get(frame, [])):
            self.boxes[frame] = list(found)
        return found


@dataclass
class KeyTrack:
    """One face over keyframes: frames [K] ascending, boxes [K, 4] x0, y0, x1, y1 (decoded pixels)."""

    frames: list[int]
    boxes: list[np.ndarray]
    shot: int = 0

    @property
    def span(self) -> int:
        return self.frames[-1] - self.frames[0] + 1

    @property
    def size(self) -> float:
        b = np.asarray(self.boxes)
        return float(np.median(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])))

    def box_near(self, frame: int) -> np.ndarray:
        return self.boxes[int(np.argmin(np.abs(np.asarray(self.frames) - frame)))]


def _centre_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Centre distance of two boxes over the larger box's side."""
    d = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
    return float(d / max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1], 1e-6))


def link_tracks(boxes: dict[int, list[Box]], cuts: list[int], max_gap: int) -> list[KeyTrack]:
    """Link keyframe boxes into tracks: same shot, at most ``max_gap`` frames apart, centres close."""
    shots = np.asarray(cuts, int)
    done, active = [], []
    for frame in sorted(boxes):
        shot = int(np.searchsorted(shots, frame, side="right"))
        still = [t for t in active if t[0] == shot and frame - t[1].frames[-1] <= max_gap]
        done += [t[1] for t in active if not any(t is s for s in still)]
        active, taken = still, set()
        for box in sorted(boxes[frame], key=lambda b: -b.size):
            arr = box.as_array()
            free = [(k, t) for k, t in enumerate(active) if k not in taken]
            near = min(free, key=lambda kt: _centre_distance(kt[1][1].boxes[-1], arr), default=None)
            if near is not None and _centre_distance(near[1][1].boxes[-1], arr) < SAME_FACE:
                near[1][1].frames.append(frame)
                near[1][1].boxes.append(arr)
                taken.add(near[0])
            else:
                active.append((shot, KeyTrack([frame], [arr], shot)))
                taken.add(len(active) - 1)
    return done + [t[1] for t in active]


def choose_main(tracks: list[KeyTrack]) -> list[KeyTrack]:
    """Per shot, the longest-lasting track; among those within ``TIE`` of the longest, the largest
    face. (Faces are not matched across cuts: each shot's main face is its own longest track.)"""
    mains = []
    for shot in sorted({t.shot for t in tracks}):
        cands = [t for t in tracks if t.shot == shot]
        longest = max(t.span for t in cands)
        mains.append(max((t for t in cands if t.span >= TIE * longest), key=lambda t: (t.size, t.span)))
    return mains


def follows(track_boxes: np.ndarray, valid: np.ndarray, mains: list[KeyTrack]) -> bool:
    """Did the tracker (boxes [N, 4], valid [N]) follow the main tracks on most of their keyframes?"""
    hits = [bool(valid[f]) and _centre_distance(track_boxes[f], b) < SAME_FACE
            for m in mains for f, b in zip(m.frames, m.boxes, strict=True) if f < len(valid)]
    return not hits or float(np.mean(hits)) >= 0.8


class GuidedDetector(_Clocked):
    """Reports only the main face (the detection nearest its track's box at the closest keyframe);
    nothing outside the main tracks' spans, so the tracker never takes another face there."""

    def __init__(self, inner: FaceDetector, mains: list[KeyTrack], max_gap: int):
        super().__init__(inner)
        self.mains, self.max_gap = mains, max_gap

    def detect(self, frame_rgb: np.ndarray, *args, **kwargs) -> list[Box]:
        frame = self.clock()
        main = next((m for m in self.mains if m.frames[0] - self.max_gap <= frame <= m.frames[-1] + self.max_gap),
                    None)
        if main is None:
            return []
        ref = main.box_near(frame)
        found = self.inner.detect(frame_rgb, *args, **kwargs)
        best = min(found, key=lambda b: _centre_distance(b.as_array(), ref), default=None)
        return [best] if best is not None and _centre_distance(best.as_array(), ref) < SAME_FACE else []
