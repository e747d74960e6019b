import sys

from functional_fit.cli import main

sys.exit(main())
