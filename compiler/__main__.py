"""`python -m loft.compiler` = `loftc`."""

import sys

from .cli import main

sys.exit(main())
