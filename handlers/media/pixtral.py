"""What Pixtral-12B does with an image, the sizes every picture sent is made to.

Pixtral's `image_config` (tests/test_images.py checks both against mistral_common's
encoder): the server scales any image larger than MAX_SIDE down to it, so sending
more pixels costs bandwidth and buys nothing; and it charges one token per
PATCH × PATCH patch (plus one per row, `handlers.media.images.image_tokens`).
Photos, video frames, contact sheets and PDF pages are all sized to MAX_SIDE here.
"""

MAX_SIDE = 1024  # px, the longest side of an image the model sees (max_image_size)
PATCH = 16  # px, one token per PATCH × PATCH patch (image_patch_size)
