"""Run the command line as ``python -m devora_lab.cli``."""

import sys

from devora_lab.cli import main

sys.exit(main())
