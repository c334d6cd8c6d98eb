"""``python -m study``: the study command line (see :mod:`study.cli`)."""

import sys

from .cli import main

sys.exit(main())
