"""The demo: the asyncio docs' stream examples with asyncstreams on every backend.

This is ``python -m asyncstreams demo``; it is kept here for old links::

    python examples/demo.py [asyncio|uvloop|trio ...]
"""

from __future__ import annotations

import subprocess
import sys

if __name__ == "__main__":
    backends = [arg for name in sys.argv[1:] for arg in ("--backend", name)]
    command = [sys.executable, "-m", "asyncstreams", "demo", *backends]
    sys.exit(subprocess.run(command, check=False).returncode)
