"""``python -m streams.web``: the same as ``iocstream web``."""

import sys

from streams.cli.main import configure_logging
from streams.web.cli import run

configure_logging("INFO")
sys.exit(run(sys.argv[1:]))
