"""The ground floor: facts and tools every other layer uses.

Owns the settings (`settings.py`, one table read into one typed object; the casts
in `casts.py`; `.env.example` and the README's table written from it by
`settings_docs.py`), the errors people see (`errors.py`), the app's strings
(`i18n.py`), prompts and task presets (`prompts.py`), the CPU pools (`workers.py`) and the
bytes a decoding thread reads while an upload arrives (`arriving.py`),
progress and the stop button across threads (`progress.py`) and the
password-attempt limits (`sign_in_limits.py`).

May import: the standard library and small libraries (python-dotenv), nothing
else of `handlers`. Must not: import Chainlit, FastAPI or Starlette (checked by
`lint-imports`), or do I/O at import — settings are read by `load_settings()` at
start-up, prompts and translations on first use, the pools made for the first
job — so tests and the command-line tools can import any of it.
"""
