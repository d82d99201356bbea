"""The ``retrieval`` command: a thin click shell over the Python API."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys

import click
from click.core import ParameterSource

from .boxes import parse_box
from .errors import RetrievalError
from .evaluate import evaluate as evaluate_index
from .export import FORMATS as EXPORT_FORMATS
from .export import export_index
from .images import DEFAULT_MAX_PIXELS, load_image
from .indexer import COMMIT_SECONDS, build_index, existing_settings
from .info import index_info
from .models.architectures import DETECTOR_NAMES
from .models.speed import PRECISIONS
from .remove import remove_images
from .search import GROUPS, Searcher
from .settings import DEVICES, EMBEDDERS, OBJECT_SOURCES, IndexSettings
from .visualize import results_picture, save_picture

WEIGHTS_HELP = (
    "'default' (torchvision's, downloaded to the torch cache on first use), "
    "a state_dict file PATH, or 'random' (seeded; for tests)"
)


def _user_errors(command):
    """Print a ``RetrievalError`` as one line on stderr and exit 1; other errors keep their traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RetrievalError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)

    return wrapper


def _configure_logging(quiet: bool) -> None:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="retrieval")
def main() -> None:
    """Object retrieval: index the objects in a folder of photos, then find where else an object appears.

    \b
      retrieval index gallery/ --index my-index
      retrieval query photo.jpg --box 10,20,200,240 --index my-index --save-vis result.jpg
      retrieval evaluate --index my-index --ground-truth gt.json
      retrieval info --index my-index
      retrieval remove --index my-index gallery/old-photos/
    """


@main.command()
@click.argument("gallery", type=click.Path(exists=True, file_okay=False))
@index_option
@click.option(
    "--embedder",
    type=click.Choice(EMBEDDERS),
    default="roi",
    show_default=True,
    help="roi: the detector's 1024-d box-head features (same forward pass); "
    "resnet50: 2048-d ResNet50 GAP vector of each crop.",
)
@click.option(
    "--objects",
    type=click.Choice(OBJECT_SOURCES),
    default="detect",
    show_default=True,
    help="detect: Faster R-CNN boxes; whole: each image is one object; annotations: boxes from --annotations.",
)
@click.option(
    "--annotations", type=click.Path(exists=True), help="COCO JSON file or YOLO labels folder (--objects annotations)."
)
@click.option(
    "--weights", default="default", show_default=True, help=f"Embedder weights: {WEIGHTS_HELP}. For roi: the detector."
)
@click.option("--detector-weights", default="default", show_default=True, help=f"Detector weights: {WEIGHTS_HELP}.")
@click.option(
    "--detector",
    default="resnet50_fpn",
    show_default=True,
    help="The detector: resnet50_fpn, resnet50_fpn_v2, mobilenet_v3_large_fpn, mobilenet_v3_large_320_fpn "
    "(COCO classes), or a checkpoint file of 'retrieval train-detector' (its classes and weights).",
)
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="Drop detections below this.")
@click.option("--max-objects", type=int, default=20, show_default=True, help="Keep at most this many per image.")
@click.option("--classes", default="", help="Keep only these of the detector's classes, comma-separated.")
@click.option(
    "--min-size", type=int, default=800, show_default=True, help="Detector input: short side resized to this."
)
@click.option("--max-size", type=int, default=1333, show_default=True, help="Detector input: long side at most this.")
@device_option
@precision_option
@click.option(
    "--index-type",
    default="auto",
    show_default=True,
    help="Vector index: auto (exact up to 50,000 vectors, then ivf), flat, hnsw, ivf, ivfpq, or a FAISS factory "
    "string.",
)
@click.option("--rebuild", is_flag=True, help="Allow other settings than the existing index's: re-index everything.")
@click.option("--prune", is_flag=True, help="Remove indexed images whose files are gone from the gallery.")
@click.option(
    "--max-pixels",
    type=int,
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Skip images with more pixels than this, before decoding (decompression bombs).",
)
@click.option(
    "--commit-every",
    type=float,
    default=COMMIT_SECONDS,
    show_default=True,
    help="Seconds between commits: a crash loses at most this much work, and rerunning resumes.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or per-file messages.")
@_user_errors
def index(gallery, index_dir, rebuild, prune, max_pixels, commit_every, quiet, **options):
    """Create or update an index of every image under GALLERY (recursively).

    \b
    Images: jpg, jpeg, png, bmp, webp, tif, tiff in any case; EXIF orientation
    applied; every colour mode converted to RGB. Files that cannot be read are
    skipped, recorded with their reason and listed at the end.

    \b
    On an existing index: new images are added, changed ones re-indexed,
    unchanged ones passed over, and the index's own settings are used for
    every option you leave out. Options that would change the vectors are
    refused unless --rebuild.
    """
    _configure_logging(quiet)
    settings = _index_settings(index_dir, _given_options(options))
    summary = build_index(
        gallery,
        index_dir,
        settings,
        rebuild=rebuild,
        prune=prune,
        max_pixels=max_pixels,
        commit_seconds=commit_every,
        progress=not quiet,
    )
    processed = summary.added + summary.updated
    rate = processed / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"indexed {summary.images} images, {summary.objects} objects into {index_dir}"
        f"{' (rebuilt)' if summary.rebuilt else ''}: {summary.added} new, {summary.updated} changed, "
        f"{summary.unchanged} unchanged, {summary.removed} removed, in {summary.seconds:.1f} s ({rate:.2f} images/s)"
    )
    if summary.gone:
        click.echo(f"{len(summary.gone)} indexed images are gone from the gallery; --prune removes them")
    _print_skipped(summary.skipped)


@main.command()
@index_option
@click.argument("paths", nargs=-1, required=True)
@_user_errors
def remove(index_dir, paths):
    """Remove images from an index: PATHS are files or folders, relative to the gallery or to here."""
    _configure_logging(quiet=True)
    removed = remove_images(index_dir, paths)
    click.echo(f"removed {len(removed)} images from {index_dir}")


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@index_option
@click.option("--box", help="Query box X1,Y1,X2,Y2 in the image's pixels; default: the whole image.")
@click.option("--top-k", type=int, default=10, show_default=True, help="How many results.")
@click.option(
    "--group",
    type=click.Choice(GROUPS),
    default="image",
    show_default=True,
    help="image: rank gallery images by their best object; object: rank objects.",
)
@json_option
@click.option(
    "--save-vis", type=click.Path(dir_okay=False), help="Write a picture of the query and the results (.jpg or .png)."
)
@device_option
@precision_option
@_user_errors
def query(image, index_dir, box, top_k, group, as_json, save_vis, device, precision):
    """Find the gallery objects most similar to the BOX in IMAGE (cosine similarity)."""
    _configure_logging(quiet=True)
    query_box = parse_box(box) if box else None
    searcher = Searcher(index_dir, device=device, precision=precision)
    loaded = load_image(image)
    results = searcher.query(loaded, query_box, top_k=top_k, group=group)
    if save_vis:
        save_picture(results_picture(loaded.rgb, query_box, results), save_vis)
    if as_json:
        click.echo(json.dumps({"results": [r.to_dict() for r in results]}, indent=2))
    else:
        _print_results(results)
    if save_vis:
        click.echo(f"picture written to {save_vis}", err=as_json)


@main.command()
@index_option
@click.option(
    "--ground-truth",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Ground-truth JSON (see README).",
)
@click.option(
    "--top-k", type=int, default=10, show_default=True, help="k of recall@k (and P@k, beside P@1, P@5, P@10)."
)
@json_option
@device_option
@precision_option
@_user_errors
def evaluate(index_dir, ground_truth, top_k, as_json, device, precision):
    """Measure retrieval precision against ground truth: P@1, P@5, P@10, recall@k and mAP."""
    _configure_logging(quiet=True)
    report = evaluate_index(index_dir, ground_truth, top_k, device=device, precision=precision)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    names = [key for key in report if key.startswith(("P@", "recall@"))]
    click.echo("  ".join(["query".ljust(28), "AP".rjust(6)] + [n.rjust(9) for n in names]))
    for row in report["queries"]:
        cells = [_shorten(_display_path(row["image"]), 28).ljust(28), f"{row['AP']:.3f}".rjust(6)]
        click.echo("  ".join(cells + [f"{row[n]:.3f}".rjust(9) for n in names]))
    click.echo(
        "  ".join(["mean".ljust(28), f"{report['mAP']:.3f}".rjust(6)] + [f"{report[n]:.3f}".rjust(9) for n in names])
    )
    click.echo(
        f"mAP {report['mAP']:.3f} over {len(report['queries'])} queries "
        f"(a random ranking would score {report['chance_mAP']:.3f})"
    )


@main.command()
@index_option
@json_option
@_user_errors
def info(index_dir, as_json):
    """Show what an index holds and which models made it."""
    details = index_info(index_dir)
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    manifest = details["manifest"]
    click.echo(f"index      {details['index']}")
    click.echo(f"gallery    {details['gallery_root']}")
    click.echo(f"images     {details['images']}")
    click.echo(f"objects    {details['objects']}")
    click.echo(
        f"embedder   {details['embedder']} ({details['dimension']}-d), "
        f"weights {_weights_text(manifest['embedder']['weights'])}"
    )
    if manifest["detector"]:
        click.echo(
            f"detector   {manifest['detector']['name']}, weights {_weights_text(manifest['detector']['weights'])}"
        )
    vectors = details["vectors"]
    search = ", ".join(f"{name} {value}" for name, value in vectors["params"].items())
    trained = f", trained on {vectors['trained_on']:,} vectors" if vectors["trained_on"] else ""
    click.echo(
        f"vectors    {vectors['kind']}: FAISS {vectors['factory']}" + (f" ({search})" if search else "") + trained
    )
    settings = manifest["settings"]
    click.echo(
        f"objects    {settings['objects']}" + (f" from {settings['annotations']}" if settings["annotations"] else "")
    )
    click.echo(f"skipped    {len(details['skipped'])}")
    for entry in details["skipped"]:
        click.echo(f"  {entry['path']}: {entry['reason']}")


@main.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address; 127.0.0.1: this machine only.")
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
@click.option("--quiet", is_flag=True, help="Log only warnings and errors.")
@_user_errors
def serve(index_dir, host, port, device, precision, max_upload_mb, max_pixels, poll_seconds, quiet):
    """Serve the index: a web page at / and a JSON API under /api (schema at /openapi.json).

    Models are loaded once. Only the index's own gallery images are served, and only as JPEG pictures.
    """
    from .server.run import serve as run_server
    from .server.state import ServerLimits

    _configure_logging(quiet)
    limits = ServerLimits(max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels)
    run_server(index_dir, host, port, device, precision, limits, poll_seconds, quiet)


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the outputs.")
@click.option("--weights", default="default", show_default=True, help="The detector's weights: " + WEIGHTS_HELP + ".")
@click.option(
    "--detector",
    default="resnet50_fpn",
    show_default=True,
    help="A detector name (as for 'retrieval index') or a checkpoint of 'retrieval train-detector'.",
)
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="Drop detections below this.")
@click.option("--max-objects", type=int, default=20, show_default=True, help="Keep the N best detections per image.")
@click.option("--classes", default="", help="Comma-separated class names of the detector to keep (default: all).")
@click.option("--min-size", type=int, default=800, show_default=True, help="Detector input: short side.")
@click.option("--max-size", type=int, default=1333, show_default=True, help="Detector input: long side at most this.")
@device_option
@precision_option
@click.option(
    "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, show_default=True, help="Skip images with more pixels."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_user_errors
def detect(
    images,
    out_dir,
    weights,
    detector,
    score_threshold,
    max_objects,
    classes,
    min_size,
    max_size,
    device,
    precision,
    max_pixels,
    quiet,
):
    """Detect objects in IMAGES (files or folders): draw them, and write COCO-style detections.json.

    OUT gets one .jpg per image with boxes, labels and scores drawn, and detections.json (a COCO
    dataset whose annotations carry a score; usable as 'retrieval index --annotations').
    """
    from .detect import detect_images
    from .models import FasterRCNNModel, resolve_device

    _configure_logging(quiet)
    wanted = tuple(name.strip() for name in classes.split(",") if name.strip())
    model = FasterRCNNModel(
        weights, resolve_device(device), min_size, max_size, score_threshold, max_objects, wanted, precision, detector
    )
    summary = detect_images(images, out_dir, model, max_pixels, progress=not quiet)
    click.echo(f"{summary.detections} objects in {summary.images} images; pictures and {summary.results} written")
    _print_skipped(summary.skipped)


@main.command()
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
@_user_errors
def export(index_dir, out_format, out_dir, quiet):
    """Write the index's embeddings in the formats earlier projects produced."""
    written = export_index(index_dir, out_format, out_dir, progress=not quiet)
    click.echo(f"wrote {len(written)} files to {out_dir}")


@main.command("train-detector")
@click.option(
    "--data", "data_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder (YOLO or COCO)."
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="Best checkpoint path, e.g. runs/shapes.pt."
)
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option(
    "--detector",
    type=click.Choice(DETECTOR_NAMES),
    default="resnet50_fpn",
    show_default=True,
    help="Architecture; the mobilenet ones are lighter and faster.",
)
@click.option(
    "--weights",
    default="default",
    show_default=True,
    help="Starting weights: 'default' (torchvision's COCO), 'random', or a 91-class state_dict PATH.",
)
@click.option("--batch-size", type=int, default=2, show_default=True)
@click.option("--lr", type=float, default=0.005, show_default=True, help="SGD learning rate.")
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--weight-decay", type=float, default=1e-4, show_default=True)
@click.option(
    "--step-size", type=int, default=0, help="Epochs between learning-rate drops (0: two thirds of --epochs)."
)
@click.option("--gamma", type=float, default=0.1, show_default=True, help="Learning-rate factor at each drop.")
@click.option("--min-size", type=int, default=800, show_default=True, help="Detector input: short side.")
@click.option("--max-size", type=int, default=1333, show_default=True, help="Detector input: long side at most this.")
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="For val precision/recall/F1.")
@click.option("--workers", type=int, default=2, show_default=True, help="Image-loading processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint beside --out.")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@_user_errors
def train_detector_command(data_dir, out, resume, quiet, **options):
    """Fine-tune a Faster R-CNN on the classes of a YOLO or COCO dataset.

    Writes OUT (the best checkpoint by val mAP), OUT's .last.pt (for --resume), and a per-epoch log as
    .log.csv and .log.png beside it. Index with the result: retrieval index ... --detector OUT.
    """
    from .training.train import TrainSettings, output_paths, train_detector

    _configure_logging(quiet)
    history = train_detector(data_dir, out, TrainSettings(**options), resume=resume, progress=not quiet)
    best = max(history, key=lambda row: row["mAP"])
    paths = output_paths(out)
    click.echo(
        f"trained {options['detector']} for {len(history)} epochs; best val mAP {best['mAP']:.4f} "
        f"(mAP50 {best['mAP50']:.4f}) at epoch {best['epoch']}: {paths['best']}; last: {paths['last']}; "
        f"log: {paths['csv']}, {paths['plot']}"
    )


@main.command("evaluate-detector")
@click.option(
    "--data", "data_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder (YOLO or COCO)."
)
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="A train-detector checkpoint.")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True)
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="For precision, recall, F1, IoU.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@json_option
@click.option("--save-vis", type=click.Path(file_okay=False), help="Folder for pictures: ground truth and predictions.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_user_errors
def evaluate_detector_command(data_dir, checkpoint, split, score_threshold, device, as_json, save_vis, quiet):
    """Score a detector checkpoint: per class and overall precision, recall, F1 (IoU 0.5), mean IoU, COCO mAP."""
    from .training.evaluate import evaluate_detector

    report = evaluate_detector(data_dir, checkpoint, split, score_threshold, device, save_vis, progress=not quiet)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{report['images']} {split} images; precision/recall/F1 at IoU 0.5, score >= {score_threshold}")
    click.echo(f"{'class':<20} {'gt':>5} {'det':>5} {'P':>6} {'R':>6} {'F1':>6} {'IoU':>6} {'AP':>6} {'AP50':>6}")
    rows = [*report["per_class"].items(), ("all", {**report["overall"], "AP": report["mAP"], "AP50": report["mAP50"]})]
    for name, row in rows:
        ap, ap50 = (f"{row[k]:.3f}" if row.get(k) is not None else "-" for k in ("AP", "AP50"))
        click.echo(
            f"{name:<20} {row['ground_truth']:>5} {row['detections']:>5} {row['precision']:>6.3f} "
            f"{row['recall']:>6.3f} {row['f1']:>6.3f} {row['mean_iou']:>6.3f} {ap:>6} {ap50:>6}"
        )
    click.echo(f"mAP@[.5:.95] {report['mAP']:.4f}  mAP@.5 {report['mAP50']:.4f}")
    if save_vis:
        click.echo(f"pictures (ground truth orange, predictions green) in {save_vis}")


def _print_skipped(skipped: list[tuple[str, str]]) -> None:
    click.echo(f"skipped {len(skipped)} files" + (":" if skipped else ""))
    for path, reason in skipped:
        click.echo(f"  {path}: {reason}")


def _given_options(options: dict) -> dict:
    """The index options given on the command line (not defaulted), as IndexSettings fields."""
    context = click.get_current_context()
    given = {
        name: value
        for name, value in options.items()
        if context.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    }
    if "classes" in given:
        given["classes"] = tuple(c.strip() for c in given["classes"].split(",") if c.strip())
    return given


def _index_settings(index_dir: str, given: dict) -> IndexSettings:
    """The existing index's settings (or the defaults) with the options given on the command line."""
    values = (existing_settings(index_dir) or IndexSettings()).to_dict()
    if given.get("objects", "annotations") != "annotations" and "annotations" not in given:
        values["annotations"] = None
    weights = {given[k] for k in ("weights", "detector_weights") if k in given}
    if given.get("embedder", values["embedder"]) == "roi" and len(weights) == 1:
        values["weights"] = values["detector_weights"] = weights.pop()  # for roi they are one model
    return IndexSettings.from_dict({**values, **given})


def _print_results(results) -> None:
    if not results:
        click.echo("no results: the index holds no objects")
        return
    click.echo(f"{'rank':>4}  {'score':>7}  {'image':<40}  {'box':<26}  {'label':<16}  {'det':>5}  {'id':>6}")
    for r in results:
        box = ",".join(f"{v:.0f}" for v in r.box)
        det = f"{r.detection_score:.2f}" if r.detection_score is not None else "-"
        click.echo(
            f"{r.rank:>4}  {r.score:>7.4f}  {_shorten(_display_path(r.image), 40):<40}  {box:<26}  "
            f"{(r.label or '-')[:16]:<16}  {det:>5}  {r.object_id:>6}"
        )


def _weights_text(identity: dict) -> str:
    if identity["source"] == "random":
        return f"RANDOM (seed {identity['seed']})"
    if identity["source"] == "default":
        return f"{identity['name']} (sha256 {identity['sha256'][:12]})"
    return f"{identity['path']} (sha256 {identity['sha256'][:12]})"


def _display_path(path: str) -> str:
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


if __name__ == "__main__":  # pragma: no cover
    main()
