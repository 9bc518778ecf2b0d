"""`python -m ragline.cli …` is `ragline …`."""

import sys

from ragline.cli import main

sys.exit(main())
