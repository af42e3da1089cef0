"""The app's side of the browser: routes in front of Chainlit's, sign-in, how an answer looks.

Owns: wrappers around Chainlit's routes (`chainlit_routes.py`: uploads — read
as they arrive by `upload_body.py` —, files shown, ratings, elements, sharing; `auth_routes.py`: password limits, token
renewal), stored files served to their owner (`file_routes.py`), each socket
message checked before Chainlit takes it (`message_guard.py`), who a sign-in
names and which tokens still count (`sign_in.py`, `revocation.py`), CORS and
CSP (`browser_policy.py`), HEIC and TIFF shown as prepared (`display.py`), and
one answer rendered as Chainlit messages (`answer_view.py`).

May import: every layer below (services, chat, media, storage, core) and
Chainlit, FastAPI, Starlette. Must not: import `handlers.ops` (checked by
`lint-imports`), or decide what to say: that comes from `handlers.chat.turn`.
"""
