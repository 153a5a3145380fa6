#!/usr/bin/env bash
# Regenerates the Python code of every contract in protos/ into libs/contracts (committed).
set -euo pipefail
cd "$(dirname "$0")/.."
out=libs/contracts
rm -rf "$out/reelbatch"
mkdir -p "$out"
mapfile -t files < <(find protos -name '*.proto' | sort)
python -m grpc_tools.protoc -Iprotos \
  --python_out="$out" --mypy_out="$out" --grpc_python_out="$out" --mypy_grpc_out="$out" \
  "${files[@]}"
# Regular packages (not namespace packages) so mypy and the import system agree.
find "$out/reelbatch" -type d -exec sh -c 'touch "$1/__init__.py"' _ {} \;
