"""`python -m services.launcher ...`: the same as the `reelbatch` command."""

from __future__ import annotations

import sys

from services.launcher.cli import main

sys.exit(main())
