"""The long multi-process tests (scale-out, crashes, provider outages, the deployment's environment):
minutes of CPU, so `make test-scale` runs them, not `make test`.

They are collected only with REELBATCH_TEST_SCALE=1 (set by `make test-scale`).
"""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("REELBATCH_TEST_SCALE") == "1" else ["test_*.py", "*/test_*.py"]
