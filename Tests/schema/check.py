#!/usr/bin/env python3
"""Checks schemas/tupperware.schema.json with a real JSON Schema validator.

1. The schema is valid JSON Schema 2020-12, with a description on every property.
2. Every manifest in manifests/ validates.
3. Every invalid manifest in Tests/TuppManifestTests/Invalid marked `# schema: reject`
   is rejected by the schema (tupp's own test checks tupp rejects all of them).

YAML is read as YAML 1.2 (ruamel.yaml), as tupp reads it. Exit status 0 when all hold.
"""
import glob
import json
import os
import sys

import jsonschema
from ruamel.yaml import YAML

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(ROOT, "schemas", "tupperware.schema.json")


def documents(path):
    yaml = YAML(typ="safe", pure=True)
    with open(path, "rb") as f:
        return list(yaml.load_all(f))


def undescribed(node, where="$"):
    """Yields paths of properties that lack a description."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "description" not in sub:
                    yield f"{where}.properties.{name}"
        for key, sub in node.items():
            yield from undescribed(sub, f"{where}.{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from undescribed(sub, f"{where}[{i}]")


def main():
    failures = []
    with open(SCHEMA) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    failures += [f"schema: no description at {p}" for p in undescribed(schema)]
    validator = jsonschema.Draft202012Validator(schema)

    manifests = sorted(glob.glob(os.path.join(ROOT, "manifests", "*.y*ml")))
    for path in manifests:
        for doc in documents(path):
            errors = list(validator.iter_errors(doc))
            for e in errors:
                failures.append(f"{os.path.relpath(path, ROOT)}: schema rejects a valid manifest: {e.json_path}: {e.message}")

    corpus = sorted(glob.glob(os.path.join(ROOT, "Tests", "TuppManifestTests", "Invalid", "*.yaml")))
    checked = 0
    for path in corpus:
        with open(path) as f:
            header = f.read().splitlines()[:2]
        if len(header) < 2 or not header[1].startswith("# schema: reject"):
            continue
        checked += 1
        try:
            docs = documents(path)
        except Exception:
            continue  # the YAML itself is rejected
        if not docs or any(not validator.is_valid(d) for d in docs):
            continue
        failures.append(f"{os.path.relpath(path, ROOT)}: schema accepts an invalid manifest ({header[0]})")

    for line in failures:
        print(line)
    print(f"schema check: {len(manifests)} manifests valid, {checked} invalid manifests rejected, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
