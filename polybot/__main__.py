"""`python -m polybot ...` — see polybot.cli."""

import sys

from polybot.cli import main

if __name__ == "__main__":
    sys.exit(main())
