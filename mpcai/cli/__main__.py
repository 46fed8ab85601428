"""``python -m mpcai.cli``: the ``mpcai`` command (used by launched parties)."""

import sys

from mpcai.cli._main import main

sys.exit(main())
