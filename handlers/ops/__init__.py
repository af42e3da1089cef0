"""The operators' tools behind `python -m handlers.doctor`, `handlers.users` and `handlers.export`.

Owns: the smoke check of a live installation (`doctor.py`, its checks in
`doctor_checks.py`), adding and removing password users (`users_command.py`)
and rated answers exported as JSON Lines (`export.py`). The `python -m` names
stay `handlers/doctor.py`, `users.py` and `export.py`, thin entry points,
because scripts and the README call them.

May import: every layer below (services, chat, media, storage, core). Must not:
import `handlers.web`, or Chainlit and FastAPI themselves (checked by
`lint-imports`): a command-line tool runs without a Chainlit app.
"""
