"""Validates every manifest in deploy/kubernetes against its schema, offline.

Built-in kinds: kubernetes-validate's strict schemas (shipped in its wheel) for KUBERNETES_VERSION,
the oldest cluster version we support. Custom resources: the schema vendored in
deploy/kubernetes/schemas (KEDA's ScaledObject), closed like a strict schema so a misspelt field
fails. A kind with neither is an error: nothing reaches a cluster unchecked.

    uv run --frozen python scripts/check_kubernetes.py [DIRECTORY]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

# The oldest Kubernetes the manifests target: native `preStop: sleep` needs 1.30+, and 1.33 is
# the oldest release still maintained upstream when this was written.
KUBERNETES_VERSION = "1.33.0"
ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
# (apiVersion, kind) -> vendored JSON schema file under deploy/kubernetes/schemas.
CUSTOM_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json"}


def closed(schema: Any) -> Any:
    """`schema` with additionalProperties false wherever an object lists its properties."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if "properties" in result and "additionalProperties" not in result:
        result["additionalProperties"] = False
    return result


def documents(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every YAML document under `directory` (schemas excluded), named `file#index kind/name`."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            if document is None:
                continue
            name = document.get("metadata", {}).get("name", "?")
            found.append((f"{path.name}#{index} {document.get('kind')}/{name}", document))
    return found


def problems(directory: Path) -> list[str]:
    """One line per manifest that does not validate (empty when all do)."""
    errors = []
    schemas_dir = directory / "schemas"
    found = documents(directory)
    if not found:
        return [f"no manifests under {directory}"]
    for label, document in found:
        custom = CUSTOM_SCHEMAS.get((document.get("apiVersion", ""), document.get("kind", "")))
        try:
            if custom:
                schema = closed(json.loads((schemas_dir / custom).read_text()))
                jsonschema.validate(document, schema)
            else:
                kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except jsonschema.ValidationError as error:
            where = "/".join(str(part) for part in error.absolute_path)
            errors.append(f"{label}: {where}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{label}: no schema ({error}); vendor one under {schemas_dir}")
    return errors


def main(argv: list[str]) -> int:
    """Prints every problem; exit status 1 when there is one."""
    directory = Path(argv[0]) if argv else MANIFESTS
    found = problems(directory)
    for line in found:
        print(line, file=sys.stderr)
    if not found:
        count = len(documents(directory))
        print(
            f"{count} manifests valid (Kubernetes {KUBERNETES_VERSION} strict schemas, vendored CRD schemas)",
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
