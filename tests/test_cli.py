"""CLI surface: help on every command, settings validation as one-line errors."""

import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from retrieval.cli.main import main
from retrieval.errors import SettingsError
from retrieval.settings import IndexSettings

from tests.conftest import GALLERY


@pytest.mark.parametrize("command", [[], ["index"], ["query"], ["evaluate"], ["info"]])
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and "Usage: " in result.output and len(result.output.splitlines()) > 5


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "retrieval.cli.main", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "index" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--objects", "annotations"], "error: --objects annotations needs --annotations FILE"),
        (["--score-threshold", "1.5"], "error: --score-threshold 1.5 must lie between 0 and 1"),
        (["--max-objects", "0"], "error: --max-objects 0 must be at least 1"),
        (
            ["--weights", "a.pth", "--detector-weights", "b.pth"],
            "error: with --embedder roi the embedder is the detector",
        ),
        (["--weights", "random", "--classes", "persn"], "error: unknown class 'persn' in --classes"),
    ],
)
def test_bad_index_options_are_one_line_errors(tmp_path, args, message):
    result = CliRunner().invoke(main, ["index", str(GALLERY), "--index", str(tmp_path / "i"), "--quiet", *args])
    assert result.exit_code == 1
    assert result.output.startswith(message) and result.output.count("\n") == 1
    assert not (tmp_path / "i").exists()  # nothing written


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["index", "{tmp}/none", "--index", "{tmp}/i"],
            "Invalid value for 'GALLERY': Directory '{tmp}/none' does not exist",
        ),
        (["query", "x.jpg"], "Missing option '--index'"),
        (
            ["query", "x.jpg", "--index", "{tmp}", "--top-k", "x"],
            "Invalid value for '--top-k': 'x' is not a valid integer",
        ),
        (["info", "--index", "{tmp}", "--colour"], "No such option '--colour'"),
    ],
)
def test_usage_errors_are_one_line_pointing_to_help_with_status_2(tmp_path, args, message):
    result = CliRunner().invoke(main, [arg.format(tmp=tmp_path) for arg in args])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"error: {message.format(tmp=tmp_path)} (see 'retrieval {args[0]} --help')\n"


def test_settings_round_trip_and_roi_weights_are_one_model():
    settings = IndexSettings(embedder="roi", detector_weights="x.pth", classes=("cup",))
    assert settings.weights == settings.detector_weights == "x.pth"
    assert IndexSettings.from_dict(settings.to_dict()) == settings
    with pytest.raises(SettingsError, match="unknown settings colour"):
        IndexSettings.from_dict({**settings.to_dict(), "colour": "red"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["index", str(GALLERY), "--index", str(tmp_path / "i"), "--device", "cuda"])
    assert result.exit_code == 1
    assert result.output == "error: --device cuda: no CUDA GPU is visible to torch here; use --device cpu or auto\n"
