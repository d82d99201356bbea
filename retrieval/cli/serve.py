"""``retrieval serve`` and ``retrieval export``: an index served over HTTP, or written out in other formats."""

from __future__ import annotations

import click

from ..text import plural
from ..tools.names import EXPORT_FORMATS
from .common import configure_logging, device_option, index_option, precision_option, user_errors


@click.command()
@index_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Listen address; 127.0.0.1: this machine only (any other needs a token, or --insecure).",
)
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on.")
@device_option
@precision_option
@click.option(
    "--max-upload-mb", type=float, default=20, show_default=True, help="Refuse uploads larger than this (413)."
)
@click.option(
    "--max-pixels",
    type=int,
    default=40_000_000,
    show_default=True,
    help="Refuse uploaded images with more pixels than this (413), before decoding.",
)
@click.option(
    "--poll-seconds",
    type=float,
    default=2.0,
    show_default=True,
    help="How often to look for a newer committed state of the index (it is picked up without a restart).",
)
@click.option(
    "--token-file",
    help="A file holding a token (16+ ASCII characters) that every request but the page's files must carry as "
    "'Authorization: Bearer <token>'; the page asks for it. Wins over $RETRIEVAL_TOKEN.",
)
@click.option("--insecure", is_flag=True, help="Serve on a non-loopback --host without a token, open to anyone.")
@click.option("--quiet", is_flag=True, help="Log only warnings and errors.")
@user_errors
def serve(
    index_dir, host, port, device, precision, max_upload_mb, max_pixels, poll_seconds, token_file, insecure, quiet
):
    """Serve the index: a web page at / and a JSON API under /api (schema at /openapi.json).

    Models are loaded once. Only the index's own gallery images are served, and only as JPEG pictures. With
    --token-file (or $RETRIEVAL_TOKEN), requests need the token; without one, only loopback is served unless
    --insecure.
    """
    from ..server.auth import token_from
    from ..server.run import serve as run_server
    from ..server.state import ServerLimits

    configure_logging(quiet)
    limits = ServerLimits.from_options(max_upload_mb, max_pixels)
    token = token_from(token_file)
    run_server(index_dir, host, port, device, precision, limits, poll_seconds, quiet, token, insecure)


@click.command()
@index_option
@click.option(
    "--format",
    "out_format",
    type=click.Choice(EXPORT_FORMATS),
    required=True,
    help="per-image: embeddings/<image>.npy, summary.xlsx, summary.csv; features: fts.npy, fts.pth, img_list.json.",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the files.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def export(index_dir, out_format, out_dir, quiet):
    """Write the index's embeddings in the formats earlier projects produced."""
    from ..tools.export import export_index

    written = export_index(index_dir, out_format, out_dir, progress=not quiet)
    click.echo(f"wrote {plural(len(written), 'file')} to {out_dir}")
