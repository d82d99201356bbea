"""One place that checks user-given values, for the CLI, the Python API and the HTTP API alike.

Each check raises ``SettingsError`` with one line that names the option (as the CLI spells it, ``--top-k``)
and its value and says what is allowed, so the same mistake reads the same everywhere. The API functions
call these where they receive a value; the CLI and the server only pass values through.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence

from .errors import SettingsError


def check_int(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]`` (either bound optional); bools and non-integers are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise SettingsError(f"{name} {value!r} must be a whole number")
    number = int(value)
    _check_range(name, number, low, high)
    return number


def check_float(name: str, value: object, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite float within ``[low, high]`` (either bound optional); NaN and infinity are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise SettingsError(f"{name} {value!r} must be a finite number")
    number = float(value)
    _check_range(name, number, low, high)
    return number


def check_positive(name: str, value: object) -> float:
    """``value`` as a finite float above 0 (a rate, a factor, a duration)."""
    number = check_float(name, value)
    if number <= 0:
        raise SettingsError(f"{name} {_plain(number)} must be more than 0")
    return number


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """``value`` when it is one of ``choices``; else an error listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise SettingsError(f"unknown {name} {value!r}: use one of {', '.join(choices)}")
    return str(value)


def check_classes(classes: Sequence[str], categories: Sequence[str]) -> tuple[str, ...]:
    """``--classes`` as a tuple, each one of the detector's ``categories`` (index 0, the background, and
    torchvision's "N/A" gaps are no class)."""
    known = [name for name in categories[1:] if name != "N/A"]
    unknown = [name for name in classes if name not in known]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise SettingsError(f"unknown class {names} in --classes; the detector's classes are: {', '.join(known)}")
    return tuple(classes)


def check_output_folder(name: str, folder: str | os.PathLike) -> Path:
    """The output folder ``folder`` (``--out``, ``--save-vis``), created with its parents when missing;
    ``SettingsError`` naming the option when it is empty or cannot be created or written."""
    if not str(folder).strip():
        raise SettingsError(f"{name} is empty: give a folder for the outputs")
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SettingsError(f"{name} {path}: cannot create that folder ({error.strerror or error})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SettingsError(f"{name} {path}: that folder is not writable; give another one")
    return path


MIN_INPUT_SIDE = 32  # one cell of the detector backbone's coarsest stride


def check_input_size(min_size: object, max_size: object) -> tuple[int, int]:
    """The detector's input size (``--min-size``, ``--max-size``): ``32 <= min_size <= max_size``."""
    min_size = check_int("--min-size", min_size, low=MIN_INPUT_SIDE)
    max_size = check_int("--max-size", max_size)
    if max_size < min_size:
        raise SettingsError(f"--max-size {max_size} must be at least --min-size ({min_size})")
    return min_size, max_size


def check_detector_input(
    min_size: object, max_size: object, score_threshold: object, max_objects: object
) -> tuple[int, int, float, int]:
    """The detector settings ``retrieval detect`` and ``retrieval index`` share, checked in one place:
    the input size (``check_input_size``), ``--score-threshold`` in [0, 1], ``--max-objects`` at least 1."""
    return (
        *check_input_size(min_size, max_size),
        check_float("--score-threshold", score_threshold, 0.0, 1.0),
        check_int("--max-objects", max_objects, low=1),
    )


def _check_range(name: str, number: float, low: float | None, high: float | None) -> None:
    if low is not None and high is not None and not low <= number <= high:
        raise SettingsError(f"{name} {_plain(number)} must lie between {_plain(low)} and {_plain(high)}")
    if low is not None and number < low:
        raise SettingsError(f"{name} {_plain(number)} must be at least {_plain(low)}")
    if high is not None and number > high:
        raise SettingsError(f"{name} {_plain(number)} must be at most {_plain(high)}")


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"
