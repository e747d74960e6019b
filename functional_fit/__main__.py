"""``python -m functional_fit``: the command line (`functional_fit_cli.main`), under its old name."""

import sys

from functional_fit_cli import main

sys.exit(main())
