"""`python -m handlers.users`: add, remove and list password users (the code: `handlers/ops/users_command.py`).

Kept at this path because operators' scripts and the README call it by this name.
"""

import sys

from handlers.ops.users_command import main

if __name__ == "__main__":
    sys.exit(main())
