"""``python -m hatsu_sync``: the same as the ``hatsu-sync`` command."""

import sys

from .cli import main

sys.exit(main())
