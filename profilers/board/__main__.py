"""Entry point: `python -m modnas.profilers.board ...` here, `python agent-<hash>.pyz ...` on a board."""
from __future__ import annotations

import sys

from .agent import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
