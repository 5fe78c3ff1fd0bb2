"""``<root>/report/``: one static HTML page with PNG plots and aligned-crop thumbnails.

Built from the index (not from the run's memory), so a resumed run reports the whole dataset.
Plots: rejection reasons, clip durations, face sizes, blur and sync scores, samples per shard.
"""

from __future__ import annotations

import html
import io
import json
import tempfile
from pathlib import Path

import pandas as pd

from pipelines.data import shards
from pipelines.data.storage import Storage, join


def _figure_png(draw) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=90)
    try:
        draw(ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def _hist(values: pd.Series, title: str, xlabel: str):
    def draw(ax):
        v = pd.to_numeric(values, errors="coerce").dropna()
        if len(v):
            ax.hist(v, bins=min(30, max(5, len(v))), color="#4477aa")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("clips")

    return draw


def _bars(counts: pd.Series, title: str, ylabel: str):
    def draw(ax):
        if len(counts):
            ax.bar([str(i) for i in counts.index], counts.values, color="#aa4455")
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        else:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_ylabel(ylabel)

    return draw


def _plots(inputs: pd.DataFrame, clips: pd.DataFrame, done: list[shards.DoneShard]) -> dict[str, bytes]:
    col = lambda name: clips[name] if name in clips else pd.Series(dtype=float)  # noqa: E731
    rejected = inputs.loc[inputs["status"] != "accepted", "reason"].value_counts()
    clip_rejects = pd.Series(dtype=int)
    for text in inputs.get("clip_reject_reasons", pd.Series(dtype=str)).dropna():
        clip_rejects = clip_rejects.add(pd.Series(json.loads(text), dtype=int), fill_value=0)
    per_shard = pd.Series({s.name[len(shards.SHARD_PREFIX):]: s.record["samples"] for s in done}, dtype=int)
    sync = next((c for c in clips.columns if c.startswith("score_sync")), "score_sync_confidence")
    return {
        "rejections.png": _figure_png(_bars(rejected, "rejected inputs by reason", "inputs")),
        "clip_rejections.png": _figure_png(_bars(clip_rejects.sort_values(ascending=False),
                                                 "rejected clip candidates by reason", "clips")),
        "durations.png": _figure_png(_hist(col("duration_s"), "clip durations", "seconds")),
        "face_sizes.png": _figure_png(_hist(col("face_size"), "face size", "source pixels")),
        "blur.png": _figure_png(_hist(col("score_blur"), "blur score (variance of Laplacian)", "score")),
        "sync.png": _figure_png(_hist(col(sync), f"A/V sync ({sync})", "score")),
        "samples_per_shard.png": _figure_png(_bars(per_shard, "samples per shard", "samples")),
    }


def _middle_frame_png(mp4: bytes) -> bytes | None:
    import cv2

    with tempfile.TemporaryDirectory(prefix="iptalker-thumb-") as d:
        path = Path(d) / "clip.mp4"
        path.write_bytes(mp4)
        cap = cv2.VideoCapture(str(path))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, n // 2))
        ok, frame = cap.read()
        cap.release()
    if not ok:
        return None
    ok, png = cv2.imencode(".png", cv2.resize(frame, (128, 128), interpolation=cv2.INTER_AREA))
    return png.tobytes() if ok else None


def _thumbnails(storage: Storage, done: list[shards.DoneShard], n: int) -> dict[str, bytes]:
    """Middle frames of the first samples of each shard, spread over shards, ``n`` at most."""
    nonempty = [s for s in done if s.record["samples"]]
    per_shard = -(-n // max(1, len(nonempty)))  # ceil
    out: dict[str, bytes] = {}
    for shard in nonempty:
        for i, (key, files) in enumerate(shards.iter_shard_samples(storage, shard.tar, decode=False)):
            if i >= per_shard or len(out) >= n:
                break
            png = _middle_frame_png(files["frames.mp4"])
            if png:
                out[f"thumb-{key}.png"] = png
    return out


def write_report(storage: Storage, root: str, inputs: pd.DataFrame, clips: pd.DataFrame,
                 done: list[shards.DoneShard], n_thumbnails: int = 8) -> str:
    """Write ``report/index.html`` and its PNGs; returns the page's URI."""
    report = join(root, shards.REPORT_DIR)
    plots = _plots(inputs, clips, done)
    thumbs = _thumbnails(storage, done, n_thumbnails) if n_thumbnails else {}
    for name, png in {**plots, **thumbs}.items():
        storage.write_bytes(join(report, name), png)
    rejected = inputs[inputs["status"] != "accepted"][["uri", "reason", "message"]]
    accepted = int((inputs["status"] == "accepted").sum())
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>iptalker dataset report</title>",
        "<style>body{font-family:sans-serif;margin:2em}img{margin:4px}td,th{padding:2px 8px;font-size:13px}</style>",
        f"</head><body><h1>Dataset report</h1><p>{html.escape(root)}</p>",
        f"<p>{len(inputs)} inputs: {accepted} accepted, {len(inputs) - accepted} rejected; {len(clips)} clips "
        f"in {len(done)} shards.</p>",
        "".join(f"<img src='{name}' alt='{name}'>" for name in plots),
        "<h2>Aligned crops</h2>" + "".join(f"<img src='{n}' title='{html.escape(n)}'>" for n in thumbs),
        "<h2>Rejected inputs</h2>" + rejected.to_html(index=False, escape=True),
        "</body></html>",
    ]
    uri = join(report, "index.html")
    storage.write_bytes(uri, "\n".join(page).encode())
    return uri
