"""The detector commands: ``retrieval detect``, ``retrieval train-detector``, ``retrieval evaluate-detector``."""

from __future__ import annotations

import json

import click
from click.core import ParameterSource

from ..errors import SettingsError
from ..images import DEFAULT_MAX_PIXELS
from ..models.names import DETECTOR_NAMES, INPUT_SIZES, TRAINING_DEVICES
from ..text import plural
from ..training import SPLITS
from .common import (
    WEIGHTS_HELP,
    configure_logging,
    detection_options,
    device_option,
    input_size_options,
    json_option,
    precision_option,
    print_skipped,
    user_errors,
)


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(), metavar="IMAGES... | VIDEO_OR_STREAM")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the outputs.")
@click.option("--weights", default="default", show_default=True, help="The detector's weights: " + WEIGHTS_HELP + ".")
@click.option(
    "--detector",
    default="resnet50_fpn",
    show_default=True,
    help="A detector name (as for 'retrieval index') or a checkpoint of 'retrieval train-detector'.",
)
@detection_options
@device_option
@precision_option
@click.option(
    "--max-pixels",
    type=int,
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Skip images (refuse a video) with more pixels a frame.",
)
@click.option("--every", type=int, default=1, show_default=True, help="Video: detect on every Nth frame.")
@click.option("--max-frames", type=int, help="Video: stop after this many frames.")
@click.option("--duration", type=float, help="Video: stop after this many seconds of video.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def detect(
    inputs,
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
    every,
    max_frames,
    duration,
    quiet,
):
    """Detect objects in IMAGES (files or folders), or on one VIDEO_OR_STREAM, frame by frame.

    Images: OUT gets one .jpg per image with boxes, labels and scores drawn, and detections.json (a COCO
    dataset whose annotations carry a score; usable as 'retrieval index --annotations').

    Video: one video file (mp4, mov, avi, mkv, webm), a stream URL (rtsp://, rtsps://, http://, https://)
    or a camera index (0 is the first camera). OUT gets annotated.mp4 (each frame with the latest boxes and
    the measured frames per second drawn) and detections.json (every frame's number, time in seconds and
    detections; saved every 10 s and at the end). --every N detects on frames 0, N, 2N, ...; a stream runs
    until it ends, --max-frames, --duration or Ctrl-C, which finishes the outputs.

    Without --min-size and --max-size a detector runs at its own input size (320/640 for
    mobilenet_v3_large_320_fpn, 800/1333 for the others).
    """
    from ..tools.detect import DetectSettings, detect_images
    from ..tools.streams import stream_input

    configure_logging(quiet)
    wanted = tuple(name.strip() for name in classes.split(",") if name.strip())
    min_size, max_size = _natural_input_size(detector, min_size, max_size)
    settings = DetectSettings(
        detector=detector,
        weights=weights,
        min_size=min_size,
        max_size=max_size,
        score_threshold=score_threshold,
        max_objects=max_objects,
        classes=wanted,
        device=device,
        precision=precision,
        max_pixels=max_pixels,
    )
    video = stream_input(inputs)
    if video is not None:
        _detect_video(video, out_dir, settings, every, max_frames, duration, quiet)
        return
    if every != 1 or max_frames is not None or duration is not None:
        raise SettingsError("--every, --max-frames and --duration apply to a video: give one video, URL or camera")
    summary = detect_images(inputs, out_dir, settings, progress=not quiet)
    found = f"{plural(summary.detections, 'object')} in {plural(summary.images, 'image')}"
    click.echo(f"{found}; pictures and {summary.results} written")
    print_skipped(summary.skipped)


def _detect_video(video, out_dir, settings, every, max_frames, duration, quiet) -> None:
    """``retrieval detect`` on one video, stream or camera: run it and print its summary line."""
    from ..tools.detect_video import VideoOptions, detect_video

    options = VideoOptions(every=every, max_frames=max_frames, duration=duration)
    summary = detect_video(video, out_dir, settings, options, progress=not quiet)
    given = {"--max-frames": f" {max_frames}", "--duration": f" {duration} s", "Ctrl-C": ""}.get(summary.stopped)
    stop = f"; stopped by {summary.stopped}{given}" if given is not None else ""
    early = f"; the video ended early: {summary.broke_off}" if summary.broke_off else ""
    click.echo(
        f"read {plural(summary.frames_read, 'frame')}, detected on {summary.frames_detected}, "
        f"{plural(summary.detections, 'object')}; {summary.detector_fps:.2f} frames/s detector only, "
        f"{summary.end_to_end_fps:.2f} frames/s end to end{stop}{early}; {summary.video} and {summary.results} written"
    )


@click.command("train-detector")
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
@click.option(
    "--warmup-iters",
    type=int,
    default=1000,
    show_default=True,
    help="First-epoch steps over which the learning rate rises linearly to --lr (at most the epoch's; 0: none).",
)
@click.option(
    "--warmup-factor", type=float, default=0.001, show_default=True, help="The warm-up's first lr, a fraction of --lr."
)
@input_size_options
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="For val precision/recall/F1.")
@click.option("--workers", type=int, default=2, show_default=True, help="Image-loading processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(TRAINING_DEVICES), default="cpu", show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint beside --out.")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@user_errors
def train_detector_command(data_dir, out, resume, quiet, **options):
    """Fine-tune a Faster R-CNN on the classes of a YOLO or COCO dataset.

    Writes OUT (the best checkpoint by val mAP), OUT's .last.pt (for --resume), and a per-epoch log as
    .log.csv and .log.png beside it. Index with the result: retrieval index ... --detector OUT.
    """
    from ..training.train import TrainSettings, output_paths, train_detector

    configure_logging(quiet)
    history = train_detector(data_dir, out, TrainSettings(**options), resume=resume, progress=not quiet)
    best = max(history, key=lambda row: row["mAP"])
    paths = output_paths(out)
    click.echo(
        f"trained {options['detector']} for {plural(len(history), 'epoch')}; best val mAP {best['mAP']:.4f} "
        f"(mAP50 {best['mAP50']:.4f}) at epoch {best['epoch']}: {paths['best']}; last: {paths['last']}; "
        f"log: {paths['csv']}, {paths['plot']}"
    )


@click.command("evaluate-detector")
@click.option(
    "--data", "data_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder (YOLO or COCO)."
)
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="A train-detector checkpoint.")
@click.option("--split", type=click.Choice(SPLITS), default="val", show_default=True)
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="For precision, recall, F1, IoU.")
@click.option("--device", type=click.Choice(TRAINING_DEVICES), default="cpu", show_default=True)
@json_option
@click.option("--save-vis", type=click.Path(file_okay=False), help="Folder for pictures: ground truth and predictions.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def evaluate_detector_command(data_dir, checkpoint, split, score_threshold, device, as_json, save_vis, quiet):
    """Score a detector checkpoint: per class and overall precision, recall, F1 (IoU 0.5), mean IoU, COCO mAP."""
    from ..training.evaluate import evaluate_detector

    report = evaluate_detector(data_dir, checkpoint, split, score_threshold, device, save_vis, progress=not quiet)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    images = plural(report["images"], f"{split} image")
    click.echo(f"{images}; precision/recall/F1 at IoU 0.5, score >= {score_threshold}")
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


def _natural_input_size(detector: str, min_size: int, max_size: int) -> tuple[int, int]:
    """``(min_size, max_size)``: as given, or, where both were left at their defaults, the detector's own
    (``models.names.INPUT_SIZES``; a checkpoint keeps the defaults)."""
    context = click.get_current_context()
    defaulted = all(context.get_parameter_source(name) == ParameterSource.DEFAULT for name in ("min_size", "max_size"))
    return INPUT_SIZES[detector] if defaulted and detector in INPUT_SIZES else (min_size, max_size)
