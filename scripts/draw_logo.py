"""Draw the app's logo, favicon and starter icons as SVG files in `public/`, and
write `public/theme.json`, which gives Chainlit's buttons and links the same colour.

Chainlit 2.12 serves `public/logo_light.*` and `public/logo_dark.*` at
`/logo?theme=…` (the welcome screen and the login page show it 150–200 px
wide) and `public/favicon.*` at `/favicon` (the tab, and the avatar of the
app's messages); `public/login.svg` is the login page's picture
(`login_page_image` in .chainlit/config.toml; without it Chainlit blows the
favicon up to fill half the screen). The starter icons are `<img>`s, so they cannot follow the
theme's text colour: they are drawn in the brand colour, readable on both.

Run it after changing a colour or a shape, and commit what it writes:

    .venv/bin/python scripts/draw_logo.py
"""

from __future__ import annotations

import json
from pathlib import Path

PUBLIC = Path(__file__).resolve().parent.parent / "public"
NAME = "Visual Assistant"
BRAND_FROM, BRAND_TO = "#4f46e5", "#7c3aed"  # indigo to violet
ICON_STROKE = "#6366f1"  # readable on white and on Chainlit's dark grey
TEXT = {"light": "#111827", "dark": "#f3f4f6"}
# Chainlit's own pink (`--primary`, `--ring`: "H S% L%") becomes the brand's indigo:
# #4f46e5 on white, the lighter #6366f1 on dark grey.
PRIMARY = {"light": "243 75% 59%", "dark": "239 84% 67%"}
FONTS = "Inter, 'Segoe UI', Roboto, 'Helvetica Neue', 'DejaVu Sans', Arial, sans-serif"

GRADIENT = f"""<defs><linearGradient id="brand" x1="0" y1="0" x2="1" y2="1">
<stop offset="0" stop-color="{BRAND_FROM}"/><stop offset="1" stop-color="{BRAND_TO}"/></linearGradient></defs>"""
# The mark, on a 48 × 48 grid: a photo (frame, sun, hills) with a spark in its corner.
GLYPH = """<rect x="8.5" y="15" width="24" height="22" rx="4" fill="none" stroke="#fff" stroke-width="3"/>
<circle cx="16.5" cy="22.5" r="2.6" fill="#fff"/>
<path d="M10 35 18 27.5 22.5 31.5 26.5 28 31 32.5" fill="none" stroke="#fff" stroke-width="3"
 stroke-linecap="round" stroke-linejoin="round"/>
<path d="M37.5 6c.5 3.6 1.9 5 5.5 5.5-3.6.5-5 1.9-5.5 5.5-.5-3.6-1.9-5-5.5-5.5 3.6-.5 5-1.9 5.5-5.5z" fill="#fff"/>"""
MARK = f'{GRADIENT}\n<rect width="48" height="48" rx="12" fill="url(#brand)"/>\n{GLYPH}'

# Lucide-style outlines (24 × 24, 2 px strokes), after the Lucide icons (ISC licence)
# that the `/` commands use, so a starter and its command look alike.
ICONS = {
    "describe": '<rect width="18" height="18" x="3" y="3" rx="2"/><circle cx="9" cy="9" r="2"/>'
    '<path d="m21 15-3.1-3.1a2 2 0 0 0-2.8 0L6 21"/>',
    "count": '<path d="M10 6h11"/><path d="M10 12h11"/><path d="M10 18h11"/><path d="M4 6h1v4"/>'
    '<path d="M4 10h2"/><path d="M6 18H4c0-1 2-2 2-3s-1-1.5-2-1"/>',
    "read": '<path d="M3 7V5a2 2 0 0 1 2-2h2"/><path d="M17 3h2a2 2 0 0 1 2 2v2"/>'
    '<path d="M21 17v2a2 2 0 0 1-2 2h-2"/><path d="M7 21H5a2 2 0 0 1-2-2v-2"/>'
    '<path d="M7 8h8"/><path d="M7 12h10"/><path d="M7 16h6"/>',
    "ask": '<circle cx="12" cy="12" r="10"/><path d="M9.1 9a3 3 0 0 1 5.8 1c0 2-3 3-3 3"/>'
    '<path d="M12 17h.01"/>',
    "compare": '<rect width="18" height="18" x="3" y="3" rx="2"/><path d="M12 3v18"/>',
}


def logo(theme: str) -> str:
    """The mark and the name; `textLength` keeps the name's width whatever font the browser has."""
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="300" height="56" viewBox="0 0 300 56" role="img">
<title>{NAME}</title>
<g transform="translate(0 4)">{MARK}</g>
<text x="62" y="38" font-family="{FONTS}" font-size="26" font-weight="600" fill="{TEXT[theme]}"
 textLength="234" lengthAdjust="spacingAndGlyphs">{NAME}</text>
</svg>
"""


def favicon() -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48" viewBox="0 0 48 48">\n{MARK}\n</svg>\n'


def login_image() -> str:
    """The login page's half-screen picture (Chainlit crops it to cover, keeping the
    middle): the brand's gradient with the mark's glyph in the middle."""
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="640" height="900" viewBox="0 0 640 900">
{GRADIENT}
<rect width="640" height="900" fill="url(#brand)"/>
<g transform="translate(191 342) scale(5)" opacity="0.9">{GLYPH}</g>
</svg>
"""


def icon(body: str) -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="24" height="24" viewBox="0 0 24 24" fill="none" '
        f'stroke="{ICON_STROKE}" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">{body}</svg>\n'
    )


def theme_json() -> str:
    """Chainlit 2.12 reads `variables.<theme>` from public/theme.json into CSS variables."""
    variables = {name: {"--primary": hsl, "--ring": hsl} for name, hsl in PRIMARY.items()}
    return json.dumps({"variables": variables}, indent=4) + "\n"


def main() -> None:
    (PUBLIC / "icons").mkdir(parents=True, exist_ok=True)
    for theme in TEXT:
        (PUBLIC / f"logo_{theme}.svg").write_text(logo(theme), encoding="utf-8")
    (PUBLIC / "favicon.svg").write_text(favicon(), encoding="utf-8")
    (PUBLIC / "login.svg").write_text(login_image(), encoding="utf-8")
    (PUBLIC / "theme.json").write_text(theme_json(), encoding="utf-8")
    for name, body in ICONS.items():
        (PUBLIC / "icons" / f"{name}.svg").write_text(icon(body), encoding="utf-8")


if __name__ == "__main__":
    main()
