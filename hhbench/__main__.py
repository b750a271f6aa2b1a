"""`python -m hhbench ...`: the `hhbench` command, run by this interpreter."""

import sys

from hhbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
