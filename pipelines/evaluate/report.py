"""The evaluation report: a text table (model beside every baseline), JSON, and HTML with plots.

Plots are matplotlib PNGs next to ``report.html``: one bar chart per headline metric (model vs
baselines), the LSE distance-vs-offset curves of a clip, mouth opening vs the audio envelope, and
frame strips (source, model with its own audio, model with another clip's audio, baselines).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from pipelines.evaluate.clips import BASELINES

HEADLINE = ("self.mouth_psnr", "self.mouth_ssim", "self.lse_c", "self.lse_d", "cross.lse_c", "cross.lse_d",
            "cross.identity_distance", "cross.mouth_audio_corr", "cross.silence_ratio")
COLUMNS = ("model",) + BASELINES


def table_rows(metrics: dict[str, float]) -> list[tuple[str, list[float]]]:
    """[(``setting.metric``, [model, source, copy_reference, mean_reference])], in key order."""
    names = sorted(k for k in metrics if k.split(".", 1)[0] in ("self", "cross"))
    return [(k, [metrics.get(k, math.nan)] + [metrics.get(f"baseline.{b}.{k}", math.nan) for b in BASELINES])
            for k in names]


def render_table(metrics: dict[str, float]) -> str:
    """Plain-text table: every model number beside the same number for each baseline."""
    head = f"{'metric':<32}" + "".join(f"{c:>16}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, vals in table_rows(metrics):
        lines.append(f"{name:<32}" + "".join(f"{v:>16.4g}" for v in vals))
    return "\n".join(lines)


def jsonable(x):
    """NaN/inf are not JSON: write them as the strings "nan", "inf", "-inf"."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def write_json(path: Path, payload: dict) -> Path:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(jsonable(payload), indent=1, sort_keys=True, allow_nan=False))
    tmp.replace(path)
    return path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bars(metrics: dict[str, float], path: Path) -> Path:
    plt = _plt()
    keys = [k for k in HEADLINE if k in metrics]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(2.4 * max(1, len(keys)), 3), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        vals = [metrics.get(key if c == "model" else f"baseline.{c}.{key}", math.nan) for c in COLUMNS]
        shown = [v if math.isfinite(v) else 0.0 for v in vals]
        ax.bar(range(len(COLUMNS)), shown, color=["C3", "C0", "C1", "C2"])
        ax.set_xticks(range(len(COLUMNS)), [c.replace("_", "\n") for c in COLUMNS], fontsize=6)
        ax.set_title(key, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_curves(curves: dict[str, list[float]], path: Path, title: str) -> Path:
    """LSE mean distance per offset, one line per candidate/setting."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    for name, curve in curves.items():
        m = (len(curve) - 1) // 2
        ax.plot(range(-m, m + 1), curve, label=name)
    ax.set_xlabel("offset (frames)")
    ax.set_ylabel("mean embedding distance")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_activity(openings: dict[str, np.ndarray], envelope: np.ndarray, path: Path, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    for name, op in openings.items():
        ax.plot(op, label=f"opening: {name}")
    ax2 = ax.twinx()
    ax2.fill_between(range(len(envelope)), envelope, color="grey", alpha=0.3, label="audio RMS")
    ax.set_xlabel("frame")
    ax.set_ylabel("mouth opening (gap / width)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def frame_strip(rows: dict[str, np.ndarray], path: Path, columns: int = 6) -> Path:
    """A PNG grid: one row per video (uint8 [N, S, S, 3]), ``columns`` evenly spaced frames."""
    import cv2

    n = min(len(v) for v in rows.values())
    idx = np.linspace(0, n - 1, min(columns, n)).round().astype(int)
    grid = np.concatenate([np.concatenate(list(v[idx]), axis=1) for v in rows.values()], axis=0)
    cv2.imwrite(str(path), np.ascontiguousarray(grid[..., ::-1]))
    return path


def write_html(path: Path, *, title: str, summary: dict, metrics: dict[str, float],
               images: list[tuple[str, str]]) -> Path:
    """A self-contained page (images by relative path): lineage, the table, the plots."""
    def cell(v):
        return "" if v is None else html.escape(f"{v:.4g}" if isinstance(v, float) else str(v))

    rows = "".join(f"<tr><th>{html.escape(k)}</th>" + "".join(f"<td>{cell(v)}</td>" for v in vals) + "</tr>"
                   for k, vals in table_rows(metrics))
    info = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{cell(v)}</td></tr>" for k, v in summary.items())
    figs = "".join(f"<figure><img src='{html.escape(src)}'><figcaption>{html.escape(cap)}</figcaption></figure>"
                   for cap, src in images)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:right}}
th{{text-align:left}}table{{border-collapse:collapse}}tr:nth-child(even){{background:#f3f3f3}}
figure{{display:inline-block;margin:1em}}</style></head><body>
<h1>{html.escape(title)}</h1><table>{info}</table>
<h2>Model beside the baselines (means over clips)</h2>
<table><tr><th>metric</th>{''.join(f'<th>{c}</th>' for c in COLUMNS)}</tr>{rows}</table>
<p>PSNR/SSIM/LSE-C/mouth-audio correlation: higher is better; LSE-D, identity distance, silence ratio:
lower is better. <i>source</i> in self-reconstruction is the ground truth itself (the ceiling).</p>
<h2>Plots and frames</h2>{figs}</body></html>"""
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
