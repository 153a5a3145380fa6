#!/usr/bin/env bash
# `buf breaking` for protos/: fails when the contracts in the working tree break what main published.
# The baseline is where this branch left main (their merge base), so contracts main gained since do
# not read as deletions here. On main itself (CI clones main) that is HEAD, so the baseline is the
# commit before it (HEAD's first parent: main before the last merge). REELBATCH_PROTO_BASELINE names
# another git revision. With no baseline (no git, a single commit, a shallow clone) or no protos/ in
# it, there is nothing published to break and the check says so and passes.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=${BUF:-buf}  # `make lint` runs this under `uv run`, which puts .venv/bin (buf-bin) on PATH

skip() { echo "buf breaking: skipped ($1)"; exit 0; }

git rev-parse --git-dir >/dev/null 2>&1 || skip "not a git checkout"
head=$(git rev-parse HEAD 2>/dev/null) || skip "no commit yet"
if [ -n "${REELBATCH_PROTO_BASELINE:-}" ]; then
  base=$(git rev-parse --verify --quiet "${REELBATCH_PROTO_BASELINE}^{commit}") \
    || skip "baseline ${REELBATCH_PROTO_BASELINE} not found"
else
  main=""
  for candidate in main origin/main; do
    if git rev-parse --verify --quiet "$candidate^{commit}" >/dev/null; then main=$candidate; break; fi
  done
  [ -n "$main" ] || skip "no main branch"
  base=$(git merge-base HEAD "$main" 2>/dev/null) || skip "no common history with $main"
  if [ "$base" = "$head" ]; then
    base=$(git rev-parse --verify --quiet "HEAD^1^{commit}") || skip "no commit before HEAD"
  fi
fi
git cat-file -e "$base:protos" 2>/dev/null || skip "no protos/ at $(git rev-parse --short "$base")"

echo "buf breaking: protos/ against $(git rev-parse --short "$base")"
git archive --format=tar "$base" protos | "$buf" breaking protos --against '-#format=tar,subdir=protos'
