"""`make bench`, large images: the shipped de-raining model on a 6000x4000 photo through
`pan infer --tile auto` (streamed by bands of rows, or tiled for a generator that cannot
stream), beside whole-image inference (--tile 0) on a photo that fits,
each in a fresh process whose peak resident memory is reported. The figures to trust are the
ratios of one run: memory of the large photo, and its seconds per megapixel over the whole
image's."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from pan_cli.datasets.photos import builtin_photo

# Runs the CLI in this child process and reports its own peak RSS (Linux: KiB) on stderr.
CHILD = """
import resource, sys
from pan_cli.cli import cli
try:
    cli(sys.argv[1:], prog_name="pan", standalone_mode=False)
finally:
    print(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
"""

# width, height, --tile: whole, auto (the shipped model streams), and tiles of the side auto
# picks for it when it must tile (768 MiB of activations at 576 bytes per pixel)
SIZES = ((1500, 1000, "0"), (6000, 4000, "auto"), (6000, 4000, "1182"))


def photo(path: Path, width: int, height: int) -> None:
    """A camera-sized JPEG from a built-in photo (content does not change the cost)."""
    image = Image.fromarray(builtin_photo("coffee").permute(1, 2, 0).numpy())
    image.resize((width, height), Image.Resampling.BICUBIC).save(path, quality=95)


def run(source: Path, out: Path, tile: str) -> tuple[float, float]:
    """(seconds, peak GiB) of `pan infer --task derain` (the shipped model) on one photo: the
    seconds pan reports for reading, running and writing it (not the process start)."""
    done = subprocess.run([sys.executable, "-c", CHILD, "infer", str(source), "--task", "derain", "-o", str(out),
                           "--tile", tile, "--workers", "0"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"pan infer failed on {source}: {done.stderr.strip()}")
    seconds = float(re.search(r"in ([0-9.]+)s", done.stderr).group(1))
    rss = re.search(r"peak_rss_kib=([0-9]+)", done.stderr).group(1)
    return seconds, int(rss) / 2**20


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width, height, tile in SIZES:
            source = Path(tmp) / f"photo-{width}x{height}.jpg"
            if not source.exists():
                photo(source, width, height)
            seconds, peak = run(source, Path(tmp) / f"out-{width}-{tile}", tile)
            rows.append((width, height, tile, seconds, peak, seconds / (width * height / 1e6)))
    print("| photo | --tile | seconds | s per MP | peak memory (GiB) |")
    print("|---|---|---|---|---|")
    for width, height, tile, seconds, peak, per_mp in rows:
        print(f"| {width}x{height} | {tile} | {seconds:.1f} | {per_mp:.2f} | {peak:.2f} |")
    print(f"\nauto / whole seconds per pixel: {rows[1][5] / rows[0][5]:.2f}x (target <= 1.2x; tiles: "
          f"{rows[2][5] / rows[0][5]:.2f}x); peak memory of the 6000x4000 photo: {rows[1][4]:.2f} GiB "
          f"(target < 3 GB; tiles: {rows[2][4]:.2f} GiB)")


if __name__ == "__main__":
    main()
