"""Product images: an operator's upload decoded with Pillow, bounded, re-encoded as plain JPEG (no EXIF, no
location, no script in a crafted file survives) and stored in the database for the app to serve itself."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from django.db import transaction
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from cardshop.models import Product, ProductImage
from core.errors import DomainError

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
# Checked on the header before any pixel is decoded: a small file can claim a huge canvas (decompression bomb).
MAX_SOURCE_PIXELS = 40_000_000
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
FULL_MAX = 800  # the product page's picture fits in FULL_MAX x FULL_MAX, aspect kept, never enlarged
THUMB_SIZE = 320  # the catalog's square thumbnail (smaller when the source is)
JPEG_QUALITY = 85


@dataclass(frozen=True)
class PreparedImage:
    full_jpeg: bytes
    width: int
    height: int
    thumb_jpeg: bytes
    thumb_size: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.full_jpeg + self.thumb_jpeg).hexdigest()


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    # No exif= and no icc_profile= passed: the re-encoded file carries pixels only.
    img.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    return buf.getvalue()


def _flatten(img: Image.Image) -> Image.Image:
    """RGB on white: JPEG has no transparency, and a transparent PNG must not turn black."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def product_image_prepare(*, data: bytes) -> PreparedImage:
    """Decode an upload and produce the shop's two JPEGs; anything that is not a sane image is refused."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise DomainError(
            "image_too_large",
            _("The image is %(size).1f MB; the limit is %(max)d MB.")
            % {"size": len(data) / 1024 / 1024, "max": MAX_UPLOAD_BYTES // 1024 // 1024},
        )
    not_an_image = DomainError(
        "image_invalid", _("This file is not an image we can read (use JPEG, PNG, GIF or WebP).")
    )
    too_many_pixels = DomainError(
        "image_too_many_pixels",
        _("The image has too many pixels: at most %(mp)d megapixels are accepted.")
        % {"mp": MAX_SOURCE_PIXELS // 1_000_000},
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            source = Image.open(io.BytesIO(data))
            if source.format not in ACCEPTED_FORMATS:
                raise not_an_image
            if source.width * source.height > MAX_SOURCE_PIXELS:
                raise too_many_pixels
            source.seek(0)  # an animated GIF or WebP: its first frame
            source.load()
            # Phones store "rotate me" in EXIF; apply it before the EXIF is dropped or the picture lies on its side.
            img = _flatten(ImageOps.exif_transpose(source))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_many_pixels from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise not_an_image from None
    full = img.copy()
    full.thumbnail((FULL_MAX, FULL_MAX), Image.Resampling.LANCZOS)
    side = min(THUMB_SIZE, img.width, img.height)
    thumb = ImageOps.fit(img, (side, side), Image.Resampling.LANCZOS)  # centre crop: catalog cards line up
    return PreparedImage(
        full_jpeg=_jpeg(full), width=full.width, height=full.height, thumb_jpeg=_jpeg(thumb), thumb_size=side
    )


def product_image_set(*, product_id: int, image: PreparedImage) -> ProductImage:
    """Replace the product's image with a prepared one. Not durable: the admin saves it inside the product's
    own change transaction."""
    with transaction.atomic():
        if not Product.objects.filter(pk=product_id).exists():
            raise DomainError("product_missing", _("This product does not exist."))
        stored, _created = ProductImage.objects.update_or_create(
            product_id=product_id,
            defaults={
                "full_jpeg": image.full_jpeg,
                "width": image.width,
                "height": image.height,
                "thumb_jpeg": image.thumb_jpeg,
                "thumb_size": image.thumb_size,
                "digest": image.digest,
            },
        )
    return stored


def product_image_remove(*, product_id: int) -> bool:
    """Drop the product's image (the pages show the placeholder again). True if there was one."""
    with transaction.atomic():
        deleted, _detail = ProductImage.objects.filter(product_id=product_id).delete()
    return bool(deleted)
