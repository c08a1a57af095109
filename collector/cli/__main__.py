"""`python -m collector.cli`: the same program as `linecheck-collector`."""

import sys

from collector.cli.program import main

sys.exit(main())
