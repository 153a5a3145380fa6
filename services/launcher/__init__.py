"""The `reelbatch` command line and the launchers of the whole system.

    cli.py          argparse: one command per job (migrate, serve, worker, seed-demo, demo, run)
    registry.py     every process the system has, by name, loaded lazily
    migrate.py      every service's migrations, in order
    embedded.py     `run` in embedded mode: everything in this process on an embedded PostgreSQL
    distributed.py  `run` in distributed mode: one child process per service
    demo.py         the demo tenant, the start-up banner and the replay of the seed live demo

This package is the composition root: the only place that knows every service, and it imports
each one lazily so a process loads only the service it runs.
"""

from __future__ import annotations

import sys

# Two optional imports that only pay off for a human at a terminal, refused here, before any
# service is imported (a None entry in sys.modules makes `import` raise ImportError, and both
# libraries then fall back on their own): httpx's __init__ imports its command line
# (`httpx._main`: rich, pygments, click) whenever those are installed, ~0.3-0.5 s of CPU at the
# start of every process that imports httpx (gateway, batch, webhook, workers); mako, which
# alembic uses, imports pygments to colour HTML tracebacks, ~0.5 s of every `migrate`. They are
# installed here only as development dependencies, but that is where processes start most often.
for _unused in ("httpx._main", "mako.ext.pygmentplugin"):
    sys.modules.setdefault(_unused, None)  # type: ignore[arg-type]
