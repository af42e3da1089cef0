"""What keeps the tests from reading this machine's settings, the repository's `.env` above all.

A developer's `.env` names their vLLM server, their database and their sign-in
secret; three things would carry it into a test:
- `load_settings()` reads `.env` from the working directory (the repository);
- Chainlit, when first imported, loads `.env` from the working directory into
  the process environment (`chainlit/__init__.py`, `CHAINLIT_ENV_FILE`);
- variables already set in the shell that runs the tests.

In the test process (tests/conftest.py): Chainlit's file is `NO_ENV_FILE` before
Chainlit is imported, and every test starts with `unset_variables()` unset and
`load_settings()`'s default file pointed at `NO_ENV_FILE`. For an app started as
its own process (the browser tests, the benchmarks): `app_environment()`.
Which variables: those of the settings table and those it names as Chainlit's
and the OpenAI client's (`FOREIGN_VARIABLES`), never a list kept here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from handlers.core.settings import FOREIGN_VARIABLES, variables

NO_ENV_FILE = os.devnull  # an empty file: what Chainlit and `load_settings` read instead
SETTINGS_VARIABLES = tuple(variable.name for variable in variables())
_FOREIGN_NAMES = {f.name for f in FOREIGN_VARIABLES if not f.name.endswith("*")}
_FOREIGN_PREFIXES = tuple(f.name[:-1] for f in FOREIGN_VARIABLES if f.name.endswith("*"))


def unset_variables(environ: Mapping[str, str]) -> list[str]:
    """The names in `environ` that a test must not inherit from this machine."""
    names = {*SETTINGS_VARIABLES, *_FOREIGN_NAMES}
    return sorted(name for name in environ if name in names or name.startswith(_FOREIGN_PREFIXES))


def app_environment(**values: str) -> dict[str, str]:
    """This machine's environment for an app run as a process, without its settings, plus `values`.

    The process runs in the repository, where `load_settings()` reads `.env`: each
    table variable is set empty, which wins over the file and means the default.
    Chainlit's and the OpenAI client's are removed, and Chainlit loads no `.env`.
    """
    unset = set(unset_variables(os.environ))
    env = {name: value for name, value in os.environ.items() if name not in unset}
    env.update(dict.fromkeys(SETTINGS_VARIABLES, ""))
    env["CHAINLIT_ENV_FILE"] = NO_ENV_FILE
    env.update(values)
    return env
