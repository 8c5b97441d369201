"""Validate payloads against a named schema of OpenAI's OpenAPI 3.1 spec (JSON Schema 2020-12)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema


class SpecValidator:
    def __init__(self, spec: dict[str, Any]) -> None:
        self._components = spec["components"]

    @lru_cache(maxsize=None)
    def _validator(self, name: str) -> jsonschema.Draft202012Validator:
        if name not in self._components["schemas"]:
            raise KeyError(f"schema {name} not in the spec")
        return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                                "components": self._components})

    def errors(self, name: str, payload: Any) -> list[str]:
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in self._validator(name).iter_errors(payload)]

    def validate(self, name: str, payload: Any) -> None:
        errs = self.errors(name, payload)
        assert not errs, f"{name} invalid: {errs[:5]}"
