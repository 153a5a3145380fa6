"""Prints the customer API's OpenAPI document (`/openapi.json`) without running anything.

`python -m services.gateway.entrypoints.openapi_export > openapi.json`: the document the live
gateway serves, built from the same app (its gRPC channels are opened lazily and never used), so
generated clients (clients/typescript) can be regenerated and checked fresh offline.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from typing import Any

from libs.config import Settings
from services.gateway.bootstrap import build_backends
from services.gateway.entrypoints.app import create_app, openapi_document


async def customer_openapi() -> dict[str, Any]:
    """The document, built inside an event loop (the gRPC aio channels need one)."""
    settings = Settings(asset_dir=tempfile.gettempdir())
    gateway = build_backends(settings)
    try:
        return openapi_document(create_app(settings, gateway.backends))
    finally:
        await gateway.close()


def main() -> None:
    """Writes the document to stdout, keys in a stable order."""
    json.dump(asyncio.run(customer_openapi()), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
