"""`pan report RUN_DIR`: a run's loss curves and validation scores as report.png, and
report.html with that plot and the sample grids, openable with no server.

matplotlib is an optional extra (pip install 'pan[report]')."""

from __future__ import annotations

import html
import json
from pathlib import Path

from pan_cli.errors import PanError, RunFailure
from pan_cli.files import atomic_write
from pan_cli.store.checkpoint import step_files

PANELS = (
    ("D", ("d_total", "d_gan", "d_hinge")),
    ("T", ("t_total", "t_gan", "t_perceptual", "t_pixel")),
    ("perceptual distances P_j (T step)", ("t_P1", "t_P2", "t_P3", "t_P4")),
    ("validation", ("val_psnr",)),
)


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise PanError(f"{run_dir} has no metrics.jsonl: is it a pan run directory?")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise PanError(f"{path}: line {exc.lineno} is not JSON") from None


def plot(records: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RunFailure("pan report needs matplotlib: pip install 'pan[report]'") from None
    panels = [(title, [k for k in keys if any(k in r for r in records)]) for title, keys in PANELS]
    panels = [(title, keys) for title, keys in panels if keys]
    figure, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True, squeeze=False)
    for axis, (title, keys) in zip(axes[:, 0], panels):
        for key in keys:
            points = [(r["step"], r[key]) for r in records if key in r]
            axis.plot(*zip(*points), label=key, marker="o" if key.startswith("val") else None, markersize=3)
        axis.set_title(title, fontsize=10)
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    figure.tight_layout()
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    plt.close(figure)


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write report.png and report.html into run_dir; returns their paths."""
    records = read_metrics(run_dir)
    if not records:
        raise PanError(f"{run_dir / 'metrics.jsonl'} is empty: nothing logged yet")
    png, page = run_dir / "report.png", run_dir / "report.html"
    plot(records, png)
    samples = step_files(run_dir / "samples", ".png")[::-1]
    config = (run_dir / "config.json").read_text() if (run_dir / "config.json").exists() else "{}"
    val = [r for r in records if "val_psnr" in r]
    best = max(val, key=lambda r: r["val_psnr"]) if val else None
    parts = [
        "<!doctype html><meta charset='utf-8'><title>pan run report</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}img{max-width:100%}</style>",
        f"<h1>{html.escape(str(run_dir))}</h1>",
        f"<p>{len([r for r in records if 't_total' in r])} log records up to step {records[-1]['step']}."
        + (f" Best validation PSNR {best['val_psnr']:.2f} dB at step {best['step']}." if best else "") + "</p>",
        "<img src='report.png' alt='loss curves'>",
        "<h2>Samples (input | output | target)</h2>",
        *(f"<h3>{p.stem}</h3><img src='samples/{p.name}' alt='{p.stem}'>" for p in samples),
        f"<h2>Configuration</h2><pre>{html.escape(config)}</pre>",
    ]
    atomic_write(page, lambda handle: handle.write("\n".join(parts).encode()))
    return png, page
