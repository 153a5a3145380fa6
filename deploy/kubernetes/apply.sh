#!/usr/bin/env bash
# Deploys (or upgrades) Reelbatch on the current kubectl context, in order: the ConfigMap, the
# migration Job (waited for: services never start on a schema older than their code), then the
# gRPC backends, the workers and the gateway, each rolled out before the next.
#   REELBATCH_IMAGE=registry.example.com/reelbatch:1.4.0 deploy/kubernetes/apply.sh
# The Secret `reelbatch-secrets` must exist first (see secret.example.yaml). KEDA must be
# installed for 30-worker.yaml's ScaledObject. docs/operations.md has the whole procedure.
set -euo pipefail
cd "$(dirname "$0")"
image="${REELBATCH_IMAGE:-reelbatch:latest}"
kubectl=(kubectl ${REELBATCH_NAMESPACE:+--namespace "$REELBATCH_NAMESPACE"})

render() { sed "s#image: reelbatch:latest#image: ${image}#" "$1"; }

"${kubectl[@]}" get secret reelbatch-secrets >/dev/null \
  || { echo "create the Secret reelbatch-secrets first (secret.example.yaml)" >&2; exit 1; }
render 00-config.yaml | "${kubectl[@]}" apply -f -
# A Job's pod template cannot change: the previous run is removed, then this release's runs.
"${kubectl[@]}" delete job reelbatch-migrate --ignore-not-found --wait=true
render 10-migrate.yaml | "${kubectl[@]}" apply -f -
"${kubectl[@]}" wait --for=condition=complete job/reelbatch-migrate --timeout=600s
for manifest in 20-billing.yaml 20-batch.yaml 20-webhook.yaml 30-worker.yaml 40-gateway.yaml; do
  render "$manifest" | "${kubectl[@]}" apply -f -
done
for deployment in billing batch webhook worker gateway; do
  "${kubectl[@]}" rollout status "deployment/${deployment}" --timeout=300s
done
