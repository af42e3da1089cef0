"""The app behind `chainlit_app.py`, in layers (docs/architecture.md).

    core/        settings, errors, strings, prompts, worker threads, progress, sign-in limits
    media/       what a file is (sniff.py) and the stills it becomes: images, HEIC, video, PDFs, links
    chat/        one chat: the turn, attachments, memory and the request, tokens, vLLM, history
    storage/     the database schema and Chainlit's data layer, files on disk, password users
    services.py  the composition root: what the app builds at start-up
    web/         routes in front of Chainlit's, sign-in, browser policy, how an answer looks
    ops/         the operators' commands: doctor, users, export

Each imports only what is below it (core <- media <- chat <- services <- web, ops;
core <- storage <- services), checked by `lint-imports` (pyproject.toml).
`users.py`, `doctor.py` and `export.py` here are only the `python -m handlers.…`
entry points that scripts call.
"""
