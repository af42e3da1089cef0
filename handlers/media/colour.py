"""Colour profiles to sRGB: Pixtral was trained on sRGB pictures, and browsers
show a photo's Display P3 or Adobe RGB values through its profile, so the
model gets what people see (docs/benchmarks.md, "Preparing a HEIC")."""

from __future__ import annotations

import functools
import io

from PIL import Image, ImageCms

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.lru_cache(maxsize=16)
def srgb_transform(icc: bytes) -> ImageCms.ImageCmsTransform | None:
    """RGB → sRGB for an RGB profile; None for no profile, an sRGB one (left as
    it is) or a damaged one (the pixels are still a picture)."""
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space != "RGB " or "sRGB" in (
            profile.profile.profile_description or ""
        ):
            return None
        return ImageCms.buildTransform(profile, _SRGB, "RGB", "RGB")
    except (OSError, ValueError, ImageCms.PyCMSError):
        return None


def in_srgb(rgb: Image.Image, icc: bytes) -> Image.Image:
    """`rgb` (8-bit RGB) converted to sRGB from the profile `icc`, or as it is."""
    transform = srgb_transform(icc)
    # Pillow types the result optional for inPlace=True, which is not used here.
    return ImageCms.applyTransform(rgb, transform) if transform else rgb  # type: ignore[return-value]
