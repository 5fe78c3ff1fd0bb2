"""ffprobe as an independent witness for tests: what a player would see in a file we wrote."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def ffprobe_streams(path: Path | str, entries: str, *, count_frames: bool = False) -> list[dict]:
    """The streams of ``path`` with the ffprobe ``stream=`` ``entries`` asked for (raises if unreadable)."""
    cmd = ["ffprobe", "-v", "error", *(["-count_frames"] if count_frames else []),
           "-show_entries", f"stream={entries}", "-of", "json", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["streams"]
