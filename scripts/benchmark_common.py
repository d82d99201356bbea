"""What the benchmark scripts share: copying a gallery, progress lines and printing tables."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path


def say(message: str) -> None:
    """One progress line on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def copy_gallery(images: list[Path], count: int, folder: Path) -> Path:
    """The first ``count`` of ``images``, cycled (under other names) when there are fewer, copied into
    ``folder`` as a gallery to index."""
    folder.mkdir(parents=True)
    for number in range(count):
        image = images[number % len(images)]
        shutil.copy(image, folder / f"{image.stem}-{number // len(images)}{image.suffix}")
    return folder


def table(rows: list[dict], columns: list[str]) -> None:
    """Print ``rows`` as right-aligned columns, a header line first."""
    cells = [[_cell(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(row[i]) for row in cells)) for i, column in enumerate(columns)]
    print("  ".join(column.rjust(width) for column, width in zip(columns, widths)))
    for row in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))


def _cell(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
