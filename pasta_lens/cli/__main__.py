"""``python -m pasta_lens.cli ...`` (and ``torchrun ... -m pasta_lens.cli ...``): the ``pasta-lens`` command."""

import sys

from pasta_lens.cli import main

sys.exit(main())
