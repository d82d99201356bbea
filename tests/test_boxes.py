import pytest
import torch

from retrieval.boxes import parse_box, validate_box, whole_image_box
from retrieval.models.detectors.frames import to_original_frame, to_resized_frame
from retrieval.errors import BoxError


def test_parse_box_reads_four_numbers_with_spaces():
    assert parse_box("10, 20.5,30,40") == (10.0, 20.5, 30.0, 40.0)


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,2,3", "must be four numbers x1,y1,x2,y2 (got 3 values)"),
        ("1,2,3,4,5", "got 5 values"),
        ("a,b,c,d", "must be four numbers"),
        ("", "got 1 values"),
    ],
)
def test_parse_box_rejects_malformed_text(text, message):
    with pytest.raises(BoxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_box(text)


def test_parse_box_with_the_image_size_checks_the_box_and_names_the_size():
    assert parse_box("0,0,640,480", 640, 480) == (0.0, 0.0, 640.0, 480.0)
    with pytest.raises(BoxError, match=r"^box 'a,b,c,d' must be four numbers x1,y1,x2,y2 within the 640x480 image$"):
        parse_box("a,b,c,d", 640, 480)
    with pytest.raises(BoxError, match=r"^box 5,5,5,9 has zero or negative area in the 640x480 image: need x1 < x2"):
        parse_box("5,5,5,9", 640, 480)
    not_finite = r"^box 0,0,inf,9 has a value that is not a finite number \(the image is 640x480\)$"
    with pytest.raises(BoxError, match=not_finite):
        parse_box("0,0,inf,9", 640, 480)


def test_validate_box_accepts_the_whole_image():
    assert validate_box((0, 0, 640, 480), 640, 480) == (0.0, 0.0, 640.0, 480.0)


@pytest.mark.parametrize(
    "box, message",
    [
        ((10, 10, 10, 50), "zero or negative area"),
        ((50, 10, 20, 40), "zero or negative area"),
        ((-1, 0, 10, 10), "lies outside the 640x480 image"),
        ((0, 0, 641, 10), "lies outside the 640x480 image"),
        ((0, 0, 10, 481), "lies outside"),
        ((0, 0, float("nan"), 10), "not a finite number"),
    ],
)
def test_validate_box_names_the_problem(box, message):
    with pytest.raises(BoxError, match=message):
        validate_box(box, 640, 480, name="--box")


def test_validate_box_message_shows_the_box_and_the_limits():
    with pytest.raises(BoxError) as error:
        validate_box((600, 10, 700, 50), 640, 480, name="--box")
    assert str(error.value) == (
        "--box 600,10,700,50 lies outside the 640x480 image: need 0 <= x1 < x2 <= 640, 0 <= y1 < y2 <= 480"
    )


def test_whole_image_box():
    assert whole_image_box(640, 480).tolist() == [[0.0, 0.0, 640.0, 480.0]]


def test_mapping_into_the_resized_frame_scales_each_axis():
    # 480x640 (h, w) resized to 600x800: x scales by 800/640 = 1.25, y by 600/480 = 1.25
    boxes = torch.tensor([[64.0, 48.0, 320.0, 240.0]])
    resized = to_resized_frame(boxes, (480, 640), (600, 800))
    assert resized.tolist() == [[80.0, 60.0, 400.0, 300.0]]
    # unequal ratios, as after flooring the resized size: 100x300 → 33x100
    resized = to_resized_frame(torch.tensor([[30.0, 10.0, 60.0, 100.0]]), (100, 300), (33, 100))
    assert resized[0].tolist() == pytest.approx([10.0, 3.3, 20.0, 33.0], rel=1e-6)


def test_mapping_back_inverts_the_mapping():
    boxes = torch.tensor([[3.5, 7.25, 100.0, 211.0], [0.0, 0.0, 640.0, 480.0]])
    there = to_resized_frame(boxes, (480, 640), (800, 1066))
    back = to_original_frame(there, (800, 1066), (480, 640))
    assert torch.allclose(back, boxes, atol=1e-4)
