"""What every ``retrieval`` command shares: its options, one-line errors, logging."""

from __future__ import annotations

import functools
import logging
import sys

import click

from ..errors import RetrievalError
from ..models.names import DEVICES, PRECISIONS

WEIGHTS_HELP = (
    "'default' (torchvision's, downloaded to the torch cache on first use), "
    "a state_dict file PATH, or 'random' (seeded; for tests)"
)


def user_errors(command):
    """Print a ``RetrievalError`` as one line on stderr and exit 1; other errors keep their traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RetrievalError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)

    return wrapper


def configure_logging(quiet: bool) -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr)
    logging.getLogger("retrieval").setLevel(logging.WARNING if quiet else logging.INFO)


index_option = click.option(
    "--index", "index_dir", required=True, type=click.Path(file_okay=False), help="Index folder."
)
device_option = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="Where models run; auto picks CUDA when available.",
)
precision_option = click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="Model arithmetic: auto = bf16 on CPUs with AMX/AVX-512 BF16 and on GPUs (fp16 on older GPUs), else fp32.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def input_size_options(command):
    """``--min-size`` and ``--max-size``: the detector's input (torchvision's GeneralizedRCNNTransform)."""
    command = click.option(
        "--max-size", type=int, default=1333, show_default=True, help="Detector input: long side at most this."
    )(command)
    return click.option(
        "--min-size", type=int, default=800, show_default=True, help="Detector input: short side resized to this."
    )(command)


def detection_options(command):
    """What the detector keeps (``--score-threshold``, ``--max-objects``, ``--classes``) and its input size."""
    command = input_size_options(command)
    command = click.option("--classes", default="", help="Keep only these of the detector's classes, comma-separated.")(
        command
    )
    command = click.option(
        "--max-objects", type=int, default=20, show_default=True, help="Keep at most this many per image."
    )(command)
    return click.option(
        "--score-threshold", type=float, default=0.5, show_default=True, help="Drop detections below this."
    )(command)


def print_skipped(skipped: list[tuple[str, str]]) -> None:
    click.echo(f"skipped {len(skipped)} files" + (":" if skipped else ""))
    for path, reason in skipped:
        click.echo(f"  {path}: {reason}")


class RegistryOption(click.Option):
    """An option that names an entry of a registry; its help lists the entries there when help is shown
    (so parts registered at run time appear too)."""

    def __init__(self, *args, registry, lead: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.registry = registry
        self.lead = lead

    def get_help_record(self, ctx: click.Context):
        entries = "; ".join(f"{name}: {self.registry.summary(name)}" for name in self.registry.names())
        self.help = f"{self.lead} {entries}."
        return super().get_help_record(ctx)
