#!/usr/bin/env bash
# The committed TypeScript client (clients/typescript) is fresh: regenerates the customer OpenAPI
# document from the gateway app and the types from it with the locked openapi-typescript, fails on
# any difference (as proto-check does for libs/contracts), and type-checks the client and example.
# npm installs exactly package-lock.json (`npm ci`, from the npm registry only; its cache is reused).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
uv run --frozen python -m services.gateway.entrypoints.openapi_export > clients/typescript/openapi.json
cd clients/typescript
npm ci --no-audit --no-fund --prefer-offline --loglevel=error
npm run --silent generate >/dev/null
npx --no-install tsc --noEmit -p .
if ! git diff --exit-code --stat -- openapi.json src/schema.d.ts; then
  echo "clients/typescript is stale: run scripts/check_typescript_client.sh and commit the result" >&2
  exit 1
fi
echo "clients/typescript is fresh"
