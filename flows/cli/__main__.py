"""``python -m flows.cli``: the same as the ``sidflows`` script."""

import sys

from flows.cli import main

sys.exit(main())
