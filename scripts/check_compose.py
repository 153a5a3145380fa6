"""Validates docker-compose.yml (and its overlays) against the Compose specification's schema, offline.

Docker cannot run on our CI machines, so the compose files are checked as documents: the schema
is the Compose specification's `compose_spec.json` as shipped in the `docker-compose` 1.29.2 wheel
on PyPI (Apache-2.0), vendored in deploy/compose/compose-spec.json. It closes every object
(`additionalProperties: false`), so a misspelt key fails here instead of on an operator's host.

    uv run --frozen python scripts/check_compose.py [FILE ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "deploy" / "compose" / "compose-spec.json"
COMPOSE_FILES = (ROOT / "docker-compose.yml", ROOT / "docker-compose.mtls.yml")


def compose_errors(document: Any) -> list[str]:
    """Every violation of the Compose specification in one parsed compose file, as `path: message`."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [
        f"{'/'.join(str(part) for part in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    ]


def main(paths: list[str]) -> int:
    """Checks each file (the repository's compose files by default); 1 when any is invalid."""
    files = [Path(path) for path in paths] or list(COMPOSE_FILES)
    failed = False
    for path in files:
        errors = compose_errors(yaml.safe_load(path.read_text()))
        for error in errors:
            print(f"{path.name}: {error}", file=sys.stderr)
        failed = failed or bool(errors)
    if not failed:
        print(f"{len(files)} compose files valid (Compose specification schema)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
