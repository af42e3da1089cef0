"""Where history and accounts are kept: the database, files on disk, password users.

Owns: the tables Chainlit's SQLAlchemy data layer writes, the app's own
`app_credentials`, and the data layer itself (`database.py`); element files
under `DATA_DIR/files` as a Chainlit storage client (`files.py`); password
credentials (`users.py`). What goes into the history is Chainlit's business.

May import: `handlers.core` only, and Chainlit's data-layer classes in
`database.py` (imported when a data layer is made, so the CLIs stay light) and
`files.py`. Must not: import media or the chat (checked by `lint-imports`);
what happens beside a deleted chat is a callback `handlers.services` passes in.
"""
