"""Validate payloads against a named schema of OpenAI's OpenAPI spec (3.1, i.e. JSON Schema 2020-12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _nullable_to_anyof(node: Any) -> Any:
    """The spec is OpenAPI 3.1 but keeps some 3.0 `nullable: true`; JSON Schema needs it spelled out."""
    if isinstance(node, list):
        return [_nullable_to_anyof(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_anyof(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


class SpecValidator:
    def __init__(self, spec: dict[str, Any]) -> None:
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        self._registry = Registry().with_resource(
            "urn:openai-spec", Resource(contents=_nullable_to_anyof(spec), specification=DRAFT202012))
        self._validators: dict[str, Any] = {}
        self._cls = Draft202012Validator

    def validate(self, schema_name: str, instance: Any) -> None:
        v = self._validators.get(schema_name)
        if v is None:
            v = self._validators[schema_name] = self._cls(
                {"$ref": f"urn:openai-spec#/components/schemas/{schema_name}"}, registry=self._registry)
        errors = sorted(v.iter_errors(instance), key=lambda e: list(e.path))
        assert not errors, f"{schema_name}: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])


def load_spec(path: Path) -> SpecValidator:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open("rb") as f:
        return SpecValidator(yaml.load(f, Loader=loader))
