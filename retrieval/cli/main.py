"""The ``retrieval`` command: a thin click shell over the Python API.

This module holds the group and the index commands (index, query, evaluate, remove, info); the others
live in ``cli_serve.py`` (serve, export) and ``cli_detector.py`` (detect, train-detector, evaluate-detector),
their shared options in ``cli_common.py``.
"""

from __future__ import annotations

import atexit
import gc
import json
import os

import click
from click.core import ParameterSource

from ..boxes import parse_box
from .common import (
    RegistryOption,
    WEIGHTS_HELP,
    configure_logging,
    detection_options,
    device_option,
    embedding_options,
    index_option,
    OneLineErrors,
    json_option,
    parse_scales,
    parse_whiten,
    precision_option,
    print_skipped,
    rerank_options,
    user_errors,
)
from .batch import BATCH_HELP, query_batch
from .detector import detect, evaluate_detector_command, train_detector_command
from .serve import export, serve
from ..search.evaluate import evaluate as evaluate_index
from ..images import DEFAULT_MAX_PIXELS
from ..pipeline.build import COMMIT_SECONDS, ENGINES, build_index, existing_settings
from ..index.info import index_info, search_space_text
from ..index.compact import compact_index
from ..index.remove import remove_images
from ..search.queries import load_query_image
from ..search.searcher import GROUPS, Searcher
from ..models.registry import EMBEDDERS
from ..index.stores import STORES
from ..settings import OBJECT_SOURCES, IndexSettings
from ..sources.video import DEFAULT_MIN_CHANGE, DEFAULT_VIDEO_FPS, is_frame_key
from ..videos import is_video_name
from ..text import clock, plural
from ..validation import check_int

# Registered first, so it runs last at exit: the interpreter's final garbage collection then skips the objects
# torch, torchvision and FAISS made at import (about 1 s per command on 2 cores). Refcounting still frees
# what it frees; only cycles are left, and their memory goes back with the process.
atexit.register(gc.freeze)


@click.group(cls=OneLineErrors, name="retrieval", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="retrieval")
def main() -> None:
    """Object retrieval: index the objects in a folder of photos, then find where else an object appears.

    \b
      retrieval index gallery/ --index my-index
      retrieval query photo.jpg --box 10,20,200,240 --index my-index --save-vis result.jpg
      retrieval evaluate --index my-index --ground-truth gt.json
      retrieval info --index my-index
      retrieval remove --index my-index gallery/old-photos/
      retrieval compact --index my-index                    # merge the vector segments into one
      retrieval serve --index my-index                      # web page and API at http://127.0.0.1:8000/
      retrieval detect photos/ --out detections/
      retrieval export --index my-index --format features --out features/
      retrieval train-detector --data my-yolo-data --out runs/mine.pt
      retrieval evaluate-detector --data my-yolo-data --checkpoint runs/mine.pt
      retrieval index gallery/ --index mine-index --detector runs/mine.pt
    """


@main.command()
@click.argument("gallery", type=click.Path(exists=True, file_okay=False))
@index_option
@click.option(
    "--embedder",
    cls=RegistryOption,
    registry=EMBEDDERS,
    lead="The embedder, by name:",
    default="roi",
    show_default=True,
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
@detection_options
@embedding_options
@device_option
@precision_option
@click.option(
    "--index-type",
    default="auto",
    show_default=True,
    help="Vector index: auto (exact up to 50,000 vectors, then ivf), flat, hnsw, ivf, ivfpq, or a FAISS factory "
    "string.",
)
@click.option(
    "--vector-store",
    cls=RegistryOption,
    registry=STORES,
    lead="Where the vectors live:",
    default="faiss",
    show_default=True,
)
@click.option(
    "--milvus-uri",
    default="",
    help="With --vector-store milvus: milvus://HOST:PORT/COLLECTION for a Milvus server (default: a Milvus Lite "
    "file in the index folder).",
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
@click.option(
    "--video-fps",
    type=float,
    default=DEFAULT_VIDEO_FPS,
    show_default=True,
    help="Frames sampled per second of each video in the gallery.",
)
@click.option(
    "--video-min-change",
    type=float,
    default=DEFAULT_MIN_CHANGE,
    show_default=True,
    help="Pass over a sampled frame whose 32x32 grey thumbnail differs from the last kept frame's by less than "
    "this (mean absolute difference, 0-1): near-duplicates of a still shot. 0 keeps every sampled frame.",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help="Where the models run: local (this process) or ray (an actor pool on a Ray cluster; pip install -e "
    "'.[ray]'). The index is the same either way.",
)
@click.option("--ray-address", help="The Ray cluster to join (--engine ray): the address 'ray start --head' prints.")
@click.option("--workers", type=int, help="Mapper actors (--engine ray); default: one per GPU, else one per 4 CPUs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or per-file messages.")
@user_errors
def index(gallery, index_dir, rebuild, prune, max_pixels, commit_every, engine, ray_address, workers, quiet, **options):
    """Create or update an index of every image and video under GALLERY (recursively).

    \b
    Images: jpg, jpeg, png, bmp, webp, tif, tiff, gif in any case (the first
    frame of animations); EXIF orientation applied; every colour mode
    converted to RGB. Videos: mp4, mov, avi, mkv, webm in any case, sampled
    at --video-fps with near-duplicate frames passed over; each kept frame
    is an item with its video, frame number and time. Files that cannot be
    read are skipped, recorded with their reason and listed at the end; a
    video that breaks off midway is indexed up to the break.

    \b
    On an existing index: new files are added, changed ones re-indexed
    (a changed video whole), unchanged ones passed over, and the index's own
    settings are used for every option you leave out. Options that would
    change the vectors are refused unless --rebuild; another --video-fps or
    --video-min-change re-samples the videos alone.
    """
    configure_logging(quiet)
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
        engine=engine,
        ray_address=ray_address,
        workers=workers,
    )
    click.echo(_index_summary_text(summary, index_dir))
    if summary.gone:
        gone = plural(len(summary.gone), "indexed file")
        click.echo(f"{gone} {'is' if len(summary.gone) == 1 else 'are'} gone from the gallery; --prune removes them")
    print_skipped(summary.skipped)


@main.command()
@index_option
@user_errors
def compact(index_dir):
    """Merge an index's vector segments into one and drop removed vectors from its files.

    Each commit writes its new vectors as a segment; indexing runs merge segments of one size in the
    background, so this is only needed to make searches read one segment, or to give back the space of
    many removals.
    """
    configure_logging(quiet=True)
    summary = compact_index(index_dir)
    if not summary.merged:
        click.echo(f"{index_dir} is compact already (one segment, nothing removed to drop)")
        return
    dropped = f", {plural(summary.dropped, 'removed vector')} dropped" if summary.dropped else ""
    click.echo(
        f"compacted {plural(summary.merged, 'segment')} of {index_dir} into one ({plural(summary.vectors, 'vector')}"
        f"{dropped}) in {summary.seconds:.1f} s"
    )


@main.command()
@index_option
@click.argument("paths", nargs=-1, required=True)
@user_errors
def remove(index_dir, paths):
    """Remove images and videos (with their frames) from an index: PATHS are files or folders, relative to
    the gallery or to here."""
    configure_logging(quiet=True)
    removed = remove_images(index_dir, paths)
    frames = sum(is_frame_key(key) for key in removed)
    videos = sum(is_video_name(key) for key in removed)
    parts = [plural(len(removed) - frames - videos, "image")] if len(removed) > frames + videos else []
    if videos or frames:
        parts.append(f"{plural(videos, 'video')} ({plural(frames, 'frame')})")
    click.echo(f"removed {' and '.join(parts)} from {index_dir}")


@main.command()
@click.argument("image", type=click.Path(dir_okay=False), required=False)
@index_option
@click.option("--box", help="Query box X1,Y1,X2,Y2 in the image's pixels; default: the whole image.")
@click.option("--time", "time", type=float, help="When IMAGE is a video: the time (seconds) of the frame to query.")
@click.option("--top-k", type=int, default=10, show_default=True, help="How many results.")
@click.option(
    "--group",
    type=click.Choice(GROUPS),
    default="image",
    show_default=True,
    help="image: one result per image or video (its best frame); object: one per object, consecutive matching "
    "frames of a video merged into one (with their time span).",
)
@json_option
@click.option(
    "--save-vis", type=click.Path(dir_okay=False), help="Write a picture of the query and the results (.jpg or .png)."
)
@device_option
@precision_option
@click.option("--batch", "batch_file", type=click.Path(dir_okay=False), metavar="FILE", help=BATCH_HELP)
@rerank_options
@user_errors
def query(image, index_dir, box, time, top_k, group, as_json, save_vis, device, precision, batch_file, rerank):
    """Find the gallery objects most similar to the BOX in IMAGE (cosine similarity), or answer every query
    of a --batch FILE. IMAGE may be a video: --time picks its frame."""
    configure_logging(quiet=True)
    check_int("--top-k", top_k, low=1)  # the check rank() makes, here before the models load
    if batch_file is not None:
        search = dict(index_dir=index_dir, top_k=top_k, group=group, device=device, precision=precision, rerank=rerank)
        return query_batch(batch_file, image, box, save_vis, time, **search)
    if image is None:
        raise click.UsageError("missing argument 'IMAGE' (or --batch FILE)")
    loaded = load_query_image(image, time)
    query_box = parse_box(box, loaded.width, loaded.height) if box is not None else None
    searcher = Searcher(index_dir, device=device, precision=precision)
    results = searcher.query(loaded, query_box, top_k=top_k, group=group, rerank=rerank)
    if save_vis:
        from ..tools.visualize import results_picture, save_picture  # OpenCV, only for pictures

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
@rerank_options
@user_errors
def evaluate(index_dir, ground_truth, top_k, as_json, device, precision, rerank):
    """Measure retrieval precision against ground truth: P@1, P@5, P@10, recall@k and mAP."""
    configure_logging(quiet=True)
    report = evaluate_index(index_dir, ground_truth, top_k, device=device, precision=precision, rerank=rerank)
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
        f"mAP {report['mAP']:.3f} over {plural(len(report['queries']), 'query', 'queries')} "
        f"(a random ranking would score {report['chance_mAP']:.3f})"
    )


@main.command()
@index_option
@json_option
@user_errors
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
    if details["videos"] or details["frames"]:
        click.echo(f"videos     {details['videos']} ({plural(details['frames'], 'frame')})")
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
    click.echo(f"vectors    {_vectors_text(vectors)}")
    if "search" in vectors:
        click.echo(f"search     {search_space_text(vectors['search'], details['dimension'])}")
    settings = manifest["settings"]
    click.echo(
        f"boxes      {settings['objects']}" + (f" from {settings['annotations']}" if settings["annotations"] else "")
    )
    if details["videos"]:
        sampling = f"{settings['video_fps']:g} frames/s, near-duplicates below {settings['video_min_change']:g}"
        click.echo(f"sampling   {sampling} passed over")
    click.echo(f"skipped    {len(details['skipped'])}")
    for entry in details["skipped"]:
        click.echo(f"  {entry['path']}: {entry['reason']}")
    if details["incomplete"]:
        click.echo(f"broken off {len(details['incomplete'])} (indexed up to the break)")
    for entry in details["incomplete"]:
        click.echo(f"  {entry['path']}: {entry['reason']}")


def _index_summary_text(summary, index_dir: str) -> str:
    """The line ``retrieval index`` ends with: what the index holds, what this run did, and how fast."""
    held = [plural(summary.images, "image")]
    if summary.videos or summary.frames:
        held.append(f"{plural(summary.videos, 'video')} ({plural(summary.frames, 'frame')})")
    rate = (summary.added + summary.updated) / summary.seconds if summary.seconds else 0.0
    rates = f"{rate:.2f} {'files' if summary.frames_added else 'images'}/s"
    if summary.frames_added:
        rates += f", {summary.frames_added / summary.seconds:.2f} frames/s"
    return (
        f"indexed {', '.join(held)}, {plural(summary.objects, 'object')} into {index_dir}"
        f"{' (rebuilt)' if summary.rebuilt else ''}: {summary.added} new, {summary.updated} changed, "
        f"{summary.unchanged} unchanged, {summary.removed} removed, in {summary.seconds:.1f} s ({rates})"
    )


def _given_options(options: dict) -> dict:
    """The index options given on the command line (not defaulted), as IndexSettings fields."""
    context = click.get_current_context()
    given = {
        name: value
        for name, value in options.items()
        if context.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    }
    if "scales" in given:
        given["scales"] = parse_scales(given["scales"])
    if "whiten" in given:
        given["whiten"] = parse_whiten(given["whiten"])
    if "classes" in given:
        given["classes"] = tuple(c.strip() for c in given["classes"].split(",") if c.strip())
    return given


def _index_settings(index_dir: str, given: dict) -> IndexSettings:
    """The existing index's settings (or the defaults) with the options given on the command line."""
    values = (existing_settings(index_dir) or IndexSettings()).to_dict()
    if given.get("objects", "annotations") != "annotations" and "annotations" not in given:
        values["annotations"] = None
    if given.get("vector_store", "milvus") != "milvus" and "milvus_uri" not in given:
        values["milvus_uri"] = ""
    weights = {given[k] for k in ("weights", "detector_weights") if k in given}
    if given.get("embedder", values["embedder"]) == "roi" and len(weights) == 1:
        values["weights"] = values["detector_weights"] = weights.pop()  # for roi they are one model
    return IndexSettings.from_dict({**values, **given})


def _print_results(results) -> None:
    """The results as a table; a ``time`` column (``mm:ss.s`` and the span) when any result is a video frame."""
    if not results:
        click.echo("no results: the index holds no objects")
        return
    timed = any(r.time is not None for r in results)
    time_header = f"  {'time':<25}" if timed else ""
    click.echo(
        f"{'rank':>4}  {'score':>7}  {'image':<40}{time_header}  {'box':<26}  {'label':<16}  {'det':>5}  {'id':>6}"
    )
    for r in results:
        box = ",".join(f"{v:.0f}" for v in r.box)
        det = f"{r.detection_score:.2f}" if r.detection_score is not None else "-"
        time = f"  {_time_text(r):<25}" if timed else ""
        click.echo(
            f"{r.rank:>4}  {r.score:>7.4f}  {_shorten(_display_path(r.image), 40):<40}{time}  {box:<26}  "
            f"{(r.label or '-')[:16]:<16}  {det:>5}  {r.object_id:>6}"
        )


def _time_text(result) -> str:
    """A frame result's time as ``mm:ss.s``, followed by its span ``(mm:ss.s–mm:ss.s)`` when longer than one
    frame; ``-`` for a still image."""
    if result.time is None:
        return "-"
    start, end = (clock(t) for t in result.span)
    return clock(result.time) + (f" ({start}–{end})" if start != end else "")


def _vectors_text(vectors: dict) -> str:
    """The vector store's description in one line: FAISS's kind and factory, another store's own fields."""
    if vectors.get("store", "faiss") != "faiss":
        fields = ", ".join(f"{name} {value}" for name, value in vectors.items() if name not in ("store", "search"))
        return f"{vectors['store']}: {fields}"
    search = ", ".join(f"{name} {value}" for name, value in vectors["params"].items())
    trained = f", trained on {vectors['trained_on']:,} vectors" if vectors["trained_on"] else ""
    segments = f", {plural(vectors['segments'], 'segment')}" if "segments" in vectors else ""
    return f"{vectors['kind']}: FAISS {vectors['factory']}" + (f" ({search})" if search else "") + trained + segments


def _weights_text(identity: dict) -> str:
    """One line naming a model's weights identity (any embedder's: unknown shapes print as they are)."""
    if identity.get("source") == "random":
        return f"RANDOM (seed {identity.get('seed')})"
    name = identity.get("name") or identity.get("path") or identity.get("package")
    digest = identity.get("sha256") or identity.get("state_sha256")
    if name and digest:
        return f"{name} (sha256 {digest[:12]})"
    return json.dumps(identity, sort_keys=True)


def _display_path(path: str) -> str:
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


main.add_command(serve)
main.add_command(export)
main.add_command(detect)
main.add_command(train_detector_command)
main.add_command(evaluate_detector_command)

if __name__ == "__main__":  # pragma: no cover
    main()
