"""A frame sink that encodes in a background thread, so ffmpeg's H.264 work overlaps the model."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from preprocessing.encode import encode_mp4

_END, _ABORT = object(), object()


class _Aborted(Exception):
    pass


class EncoderSink:
    """``put`` [H, W, 3] uint8 RGB frames; ``close()`` finishes the mp4 (raises what ffmpeg raised).

    At most ``depth`` frames wait in the queue (bounded memory); ``abort()`` discards the file.
    """

    def __init__(self, path: Path, fps: float, *, crf: int = 18, preset: str = "veryfast", depth: int = 8):
        self.path = Path(path)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fps, crf, preset), name="dub-encode", daemon=True)
        self._thread.start()

    def _frames(self):
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item is _ABORT:
                raise _Aborted
            yield item

    def _run(self, fps: float, crf: int, preset: str) -> None:
        try:
            encode_mp4(self._frames(), fps, self.path, crf=crf, preset=preset)
        except BaseException as exc:  # noqa: BLE001  handed to the producer
            self._error = exc
            while True:  # drain so a blocked producer wakes up
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def put(self, frame: np.ndarray) -> None:
        if self._error is not None:
            raise RuntimeError(f"encoding {self.path} failed: {self._error}") from self._error
        while self._thread.is_alive():
            try:
                self._queue.put(frame, timeout=0.5)
                return
            except queue.Full:
                continue
        raise RuntimeError(f"encoding {self.path} failed: {self._error}")

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_END)
        self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"encoding {self.path} failed: {self._error}") from self._error

    def abort(self) -> None:
        if self._thread.is_alive():
            try:
                self._queue.put(_ABORT, timeout=5)
            except queue.Full:
                pass
        self._thread.join(timeout=10)
