"""Pass 2's frame source: the video's fps grid decoded forward on demand, in bounded memory.

decord's reader decodes ahead in a background thread whenever the caller is slower than the
decoder (the dub always is: the model, paste and encoder take far longer than decoding), and holds
those frames until asked for: ~250 frames, 1.5 GB at 1080p, measured by ``benchmarks/dub_bench.py``.
OpenCV's FFmpeg reader decodes only when read, so at most the frames of one request are held.
Pixels are the same as decord's (both convert with FFmpeg's swscale); frame k of the grid is the
decoded frame ``FrameReader.source_indices[k]``, so both readers agree on timing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from preprocessing.media import FrameReader, MediaInfo


class StreamingFrames:
    """``get(grid indices)`` -> [B, H, W, 3] uint8 RGB; cheap for ascending requests (the usual
    timeline), a seek for a backward one (bounce/loop). Falls back to decord where OpenCV cannot
    read the file or disagrees on the frame size."""

    def __init__(self, path: Path, info: MediaInfo, fps: float, grid: np.ndarray, threads: int = 1):
        self.path, self.info, self.fps, self.threads = Path(path), info, fps, threads
        self.size_hw = (info.height, info.width)
        self.grid = grid  # [N] decoded frame of each grid index (FrameReader.source_indices)
        self._fallback: FrameReader | None = None  # opened only when needed: an open decord reader
        # keeps decoding ahead in its thread even while it is not read
        self._cap: cv2.VideoCapture | None = None
        self._next = 0  # decoded frame the capture returns on the next read
        self._open()

    def __len__(self) -> int:
        return len(self.grid)

    def _open(self) -> None:
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, max(self.threads, 1)])
        self._cap, self._next = (cap, 0) if cap.isOpened() else (None, 0)

    def _seek(self, frame: int) -> None:
        """Position the capture so that the next read returns decoded frame ``frame``."""
        if frame < self._next:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
            if int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) == frame:
                self._next = frame
            else:  # an inexact seek: read forward from the start instead
                self._cap.release()
                self._open()
        if self._cap is None:
            raise EOFError
        while self._next < frame:
            if not self._cap.grab():
                raise EOFError
            self._next += 1

    def _read(self, frame: int) -> np.ndarray:
        self._seek(frame)
        ok, bgr = self._cap.read()
        if not ok or bgr.shape[:2] != self.size_hw:
            raise EOFError
        self._next += 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Frames at grid indices [B] (any order, repeats allowed) -> [B, H, W, 3] uint8 RGB."""
        wanted = self.grid[np.asarray(indices, np.int64)]
        unique, inverse = np.unique(wanted, return_inverse=True)
        if self._cap is not None:
            try:
                decoded = np.stack([self._read(int(f)) for f in unique])
                return decoded[inverse]
            except (EOFError, cv2.error):
                self.close()  # OpenCV cannot follow this file: decord from here on
        if self._fallback is None:
            self._fallback = FrameReader(self.path, self.fps, num_threads=self.threads, info=self.info)
        return self._fallback.get(indices)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
