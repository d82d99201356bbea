"""``retrieval query --batch FILE``: every query of a batch file, one JSON line each (``search/batch.py``)."""

from __future__ import annotations

import json

import click

from ..search.batch import answer_records, read_batch_file
from ..search.searcher import Searcher
from ..text import plural
from .common import OneLineError

BATCH_HELP = (
    "Answer every query in FILE instead of IMAGE: JSON lines (.jsonl/.json: image, box, time, id) or CSV (.csv, "
    "header image,x1,y1,x2,y2[,time][,id]); image paths relative to FILE's folder. Prints one JSON line per "
    "query, in order; a query that fails gets an error line and the others go on; exits 1 when any failed."
)


def query_batch(
    batch_file: str, image: str | None, box: str | None, save_vis: str | None, time: float | None, **search
) -> None:
    """Print one JSON line per query of ``batch_file`` (``search``: ``index_dir``, ``top_k``, ``group``,
    ``device``, ``precision``, ``rerank``); ``OneLineError`` (exit 1) at the end when any query failed."""
    given = [
        name
        for name, value in (("IMAGE", image), ("--box", box), ("--time", time), ("--save-vis", save_vis))
        if value is not None
    ]
    if given:
        raise click.UsageError(f"--batch FILE takes its images, boxes and times from FILE: leave out {given[0]}")
    lines = read_batch_file(batch_file)
    searcher = Searcher(search["index_dir"], device=search["device"], precision=search["precision"])
    failed = 0
    for record in answer_records(searcher, lines, search["top_k"], search["group"], rerank=search["rerank"]):
        failed += "error" in record
        click.echo(json.dumps(record))
    if failed:
        raise OneLineError(f"{failed} of {plural(len(lines), 'query', 'queries')} failed; their lines say why")
