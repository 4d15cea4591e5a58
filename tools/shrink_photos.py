"""Copy a folder of photos with the long side at most N px, as JPEG quality 95 with full-resolution
colour: the copy `make weights-inpaint` trains its third stage on (it ran on a GPU machine that
takes at most 64 MiB of data; the training crops are the same fractions of each scene). The
photos are the ones training reads (pan's image listing and reader); sub-folders are kept.

    python tools/shrink_photos.py SRC DST [LONG_SIDE]
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from pan_cli.datasets.images import list_images, read_image


def shrink(source: Path, target: Path, long_side: int = 640) -> None:
    for path in list_images(source, on_skipped=lambda line: print(line, file=sys.stderr)):
        image = Image.fromarray(read_image(path, 3).permute(1, 2, 0).numpy())
        scale = min(1.0, long_side / max(image.size))
        if scale < 1.0:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        out = (target / path.relative_to(source)).with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out, quality=95, subsampling=0)


if __name__ == "__main__":
    shrink(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 640)
