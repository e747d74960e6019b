"""``python -m functional_fit_cli``: the command line."""

import sys

from functional_fit_cli import main

sys.exit(main())
