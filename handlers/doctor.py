"""`python -m handlers.doctor`: check the app's settings and the vLLM server (the code: `handlers/ops/doctor.py`).

Kept at this path because operators' scripts and the README call it by this name.
"""

import sys

from handlers.ops.doctor import main

if __name__ == "__main__":
    sys.exit(main())
