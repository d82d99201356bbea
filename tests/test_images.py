import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from retrieval.errors import ImageError
from retrieval.images import decode_image_bytes, load_image


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def gradient(width=40, height=30) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return np.stack([x, y, np.full_like(x, 128)], axis=2)


def test_rgb_png_round_trips_exactly():
    rgb = gradient()
    decoded = decode_image_bytes(encode(Image.fromarray(rgb), "PNG"), "t.png")
    assert decoded.dtype == np.uint8 and decoded.shape == (30, 40, 3)
    assert np.array_equal(decoded, rgb)
    assert decoded.flags.writeable


def test_greyscale_becomes_three_equal_channels():
    grey = np.arange(0, 200, dtype=np.uint8).reshape(10, 20)
    decoded = decode_image_bytes(encode(Image.fromarray(grey, "L"), "PNG"), "g.png")
    assert decoded.shape == (10, 20, 3)
    assert np.array_equal(decoded[:, :, 0], grey) and np.array_equal(decoded[:, :, 2], grey)


def test_sixteen_bit_png_is_scaled_to_eight_bits():
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    decoded = decode_image_bytes(encode(Image.fromarray(values), "PNG"), "deep.png")
    assert decoded[0, :, 0].tolist() == [0, 100, 255]


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # pure red in CMYK
    decoded = decode_image_bytes(encode(cmyk, "JPEG", quality=95), "cmyk.jpg")
    assert decoded.shape == (8, 16, 3)
    red, green, blue = decoded.reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def test_palette_with_transparency_is_composited_on_white():
    palette = Image.new("P", (4, 2))
    palette.putpalette([255, 0, 0] + [0, 0, 255] + [0, 0, 0] * 254)
    palette.putdata([0, 0, 1, 1, 0, 0, 1, 1])
    palette.info["transparency"] = 1  # index 1 (blue) is transparent
    decoded = decode_image_bytes(encode(palette, "PNG", transparency=1), "p.png")
    assert decoded[0, 0].tolist() == [255, 0, 0]
    assert decoded[0, 2].tolist() == [255, 255, 255]


def test_rgba_transparent_pixels_become_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    decoded = decode_image_bytes(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "a.png")
    assert decoded[0, 0].tolist() == [10, 20, 30]
    assert decoded[1, 1].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied():
    rgb = gradient(40, 30)
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = decode_image_bytes(encode(image, "JPEG", exif=exif, quality=95), "rotated.jpg")
    assert decoded.shape == (40, 30, 3)  # width and height swap
    expected = np.rot90(rgb, k=-1)
    assert np.abs(decoded.astype(int) - expected.astype(int)).mean() < 6


def test_one_pixel_image_decodes():
    decoded = decode_image_bytes(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), "dot.png")
    assert decoded.tolist() == [[[1, 2, 3]]]


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image_bytes(data, "anim.gif")
    assert decoded[0, 0].tolist() == [255, 0, 0]


def test_load_image_hashes_the_file_bytes(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(encode(Image.fromarray(gradient()), "PNG"))
    loaded = load_image(path)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (loaded.width, loaded.height, loaded.file_size) == (40, 30, path.stat().st_size)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file (0 bytes)"),
        (b"this is text, not an image\n", "not an image file Pillow can read"),
    ],
)
def test_unreadable_files_name_the_file_and_the_reason(tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_truncated_jpeg_is_refused():
    data = encode(Image.fromarray(gradient(200, 200)), "JPEG")
    with pytest.raises(ImageError, match="broken image data"):
        decode_image_bytes(data[: len(data) // 2], "cut.jpg")


def test_pixel_limit_refuses_before_decoding():
    data = encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageError, match="3000x3000 pixels is more than the limit of 1,000,000"):
        decode_image_bytes(data, "bomb.png", max_pixels=1_000_000)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match="cannot be read"):
        load_image(tmp_path / "absent.jpg")
