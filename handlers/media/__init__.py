"""What an uploaded file is, and the still images Pixtral is sent from it.

Owns: judging a file by its content (`sniff.py`, the one place that says image,
video or PDF), preparing pictures into a frozen `PreparedImage` (`images.py`;
`heic.py` for iPhone photos, `colour.py` for their profiles), videos into frames
or contact sheets (`video.py`, `frame_sampler.py`, `contact_sheet.py`), PDFs into
pages (`documents.py`), image links fetched without reaching inside the network
(`links.py`, `link_body.py`), and what the last three hand back (`bundle.py`).

May import: `handlers.core` only. Must not: import the chat, storage, Chainlit
or FastAPI (checked by `lint-imports`), or read the settings for its limits:
each function is given them as numbers.
"""
