"""`python -m handlers.export`: rated answers as JSON Lines (the code: `handlers/ops/export.py`).

Kept at this path because operators' scripts and the README call it by this name.
"""

import sys

from handlers.ops.export import main

if __name__ == "__main__":
    sys.exit(main())
