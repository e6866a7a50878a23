"""Task images: validation and normalisation through Pillow, and data URLs for model requests.

The format is read from the bytes, never from a file name. Corrupt and truncated files,
decompression bombs and formats other than JPEG, PNG, WebP and GIF are refused with a reason
a person can act on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import re
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
# Pillow's own bomb guard warns above MAX_IMAGE_PIXELS and raises above twice that; we refuse
# anything above our limit outright. 50 megapixels is far beyond any model's input size.
MAX_PIXELS = 50_000_000
MAX_BYTES = 40 * 1024 * 1024
THUMBNAIL_SIZE = (320, 320)
_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,(?P<data>.*)$",
    re.S,
)


class ImageError(ValueError):
    """An image that cannot be used, with a reason meant for the person who supplied it."""


@dataclass(frozen=True)
class ProcessedImage:
    sha256: str
    format: str
    mime: str
    width: int
    height: int
    original: bytes
    normalised: bytes | None
    thumbnail: bytes

    @property
    def payload(self) -> bytes:
        """The bytes to send to a model: the normalised image when it differs from the original."""
        return self.normalised if self.normalised is not None else self.original


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ImageError("the file is empty")
    if len(data) > MAX_BYTES:
        raise ImageError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read (expected JPEG, PNG, WebP or GIF)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"image has too many pixels (limit {MAX_PIXELS:,})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"corrupt image: {error}") from None
    if image.format not in ACCEPTED_FORMATS:
        raise ImageError(
            f"unsupported image format {image.format} (accepted: JPEG, PNG, WebP, GIF)"
        )
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"image is {width}×{height} pixels, above the limit of {MAX_PIXELS:,} pixels"
        )
    return image


def process_image(data: bytes) -> ProcessedImage:
    """Validate image bytes and derive what we store: format, size, normalised copy, thumbnail.

    The original bytes are kept as they are. When EXIF orientation or an animated GIF means the
    model would see something other than the first upright frame, a normalised PNG/JPEG copy is
    made and sent instead.
    """
    image = _open(data)
    source_format = str(image.format)
    try:
        image.load()
        # A second, independent decode catches truncation that load() tolerates.
        Image.open(io.BytesIO(data)).verify()
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"corrupt or truncated image: {error}") from None

    normalised_image = image
    changed = False
    if getattr(image, "is_animated", False):
        image.seek(0)
        normalised_image = image.copy()
        changed = True
    transposed = ImageOps.exif_transpose(normalised_image)
    if transposed is not None and transposed is not normalised_image:
        orientation = normalised_image.getexif().get(0x0112, 1)
        if orientation != 1:
            changed = True
        normalised_image = transposed

    normalised: bytes | None = None
    if changed:
        buffer = io.BytesIO()
        if source_format == "JPEG":
            normalised_image.convert("RGB").save(buffer, "JPEG", quality=95)
        else:
            normalised_image.save(buffer, "PNG")
        normalised = buffer.getvalue()

    thumb = normalised_image.copy()
    thumb.thumbnail(THUMBNAIL_SIZE)
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert("RGBA")
    thumb_buffer = io.BytesIO()
    thumb.save(thumb_buffer, "WEBP", quality=80)

    width, height = normalised_image.size
    return ProcessedImage(
        sha256=hashlib.sha256(data).hexdigest(),
        format=source_format,
        mime=ACCEPTED_FORMATS[source_format] if normalised is None else _mime_of(normalised),
        width=width,
        height=height,
        original=data,
        normalised=normalised,
        thumbnail=thumb_buffer.getvalue(),
    )


def _mime_of(data: bytes) -> str:
    return "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"


def decode_data_url(url: str) -> bytes:
    """The bytes of a `data:` URL; its declared type is ignored in favour of the real one."""
    match = _DATA_URL.match(url.strip())
    if not match:
        raise ImageError("malformed data: URL")
    if not match.group("b64"):
        raise ImageError("data: URL must be base64-encoded")
    try:
        return base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("data: URL holds invalid base64") from None


def to_data_url(payload: bytes, mime: str) -> str:
    """`data:<mime>;base64,…` for a model request."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


@dataclass(frozen=True)
class EncodedImage:
    """An image ready for a request, and what the stored request records instead of base64."""

    data_url: str
    sha256: str
    mime: str
    width: int
    height: int
    resized: bool

    def record(self) -> dict[str, object]:
        return {
            "sha256": self.sha256,
            "mime": self.mime,
            "width": self.width,
            "height": self.height,
            "resized": self.resized,
        }


def encode_for_request(
    payload: bytes, mime: str, width: int, height: int, max_pixels: int | None
) -> EncodedImage:
    """A `data:` URL of the image a model receives, downscaled to `max_pixels` when set.

    Downscaling keeps the aspect ratio (Qwen2.5-VL's servers were run with max_pixels 589824).
    """
    resized = False
    if max_pixels and width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        with Image.open(io.BytesIO(payload)) as image:
            smaller = image.convert("RGB" if mime == "image/jpeg" else "RGBA").resize(
                size, Image.Resampling.LANCZOS
            )
        buffer = io.BytesIO()
        if mime == "image/jpeg":
            smaller.save(buffer, "JPEG", quality=95)
        else:
            smaller.save(buffer, "PNG")
            mime = "image/png"
        payload, (width, height), resized = buffer.getvalue(), size, True
    return EncodedImage(
        data_url=to_data_url(payload, mime),
        sha256=hashlib.sha256(payload).hexdigest(),
        mime=mime,
        width=width,
        height=height,
        resized=resized,
    )
