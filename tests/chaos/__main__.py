"""`python -m tests.chaos [--seeds N | --seed N] [-v]`: see tests/chaos/run.py."""

import sys

from tests.chaos.run import main

sys.exit(main())
