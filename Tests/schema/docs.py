#!/usr/bin/env python3
"""Checks that docs/manifest.md and schemas/tupperware.schema.json describe the same fields.

Every property path of the schema ("containers.<name>.mounts[].target") must be the first
column of a table row in the reference, and every such row must name a schema property.
Exit status 0 when both hold; otherwise the differences are printed.
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def schema_paths(node, schema, path=""):
    """Yields every property path the schema declares."""
    if "$ref" in node:
        ref = node["$ref"].split("/")[-1]
        node = schema["$defs"][ref]
    for name, child in node.get("properties", {}).items():
        here = f"{path}.{name}" if path else name
        yield here
        yield from schema_paths(child, schema, here)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and ("properties" in extra or "$ref" in extra):
        yield from schema_paths(extra, schema, f"{path}.<name>")
    items = node.get("items")
    if isinstance(items, dict):
        yield from schema_paths(items, schema, f"{path}[]")
    for key in ("oneOf", "anyOf", "allOf"):
        for option in node.get(key, []):
            yield from schema_paths(option, schema, path)


def documented_paths(text):
    """The first column of every table row whose first cell is a `path`."""
    return {m.group(1) for m in re.finditer(r"^\|\s*`([^`]+)`\s*\|", text, re.M)}


def main():
    with open(os.path.join(ROOT, "schemas", "tupperware.schema.json")) as f:
        schema = json.load(f)
    with open(os.path.join(ROOT, "docs", "manifest.md")) as f:
        docs = f.read()
    declared = set(schema_paths(schema, schema))
    documented = documented_paths(docs)
    missing = sorted(declared - documented)
    unknown = sorted(documented - declared)
    for path in missing:
        print(f"not documented in docs/manifest.md: {path}")
    for path in unknown:
        print(f"documented but not in the schema: {path}")
    print(f"{len(declared)} schema fields, {len(documented)} documented, {len(missing) + len(unknown)} differences")
    return 0 if not missing and not unknown else 1


if __name__ == "__main__":
    sys.exit(main())
