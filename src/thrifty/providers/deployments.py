"""Where requests can go: the configured deployments (and aliases) by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from thrifty.errors import NotFound
from thrifty.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes: the deployment that serves it."""

    deployment: str
    provider: Provider
    model: str  # the upstream model name
    tier: str
    price_provider: str | None


class Deployments:
    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes  # deployment or alias name -> Route

    def get(self, name: str) -> Route | None:
        return self.routes.get(name)

    def route(self, name: str) -> Route:
        """The deployment a client's model name (or a routing decision) points at."""
        try:
            return self.routes[name]
        except KeyError:
            known = ", ".join(sorted(self.routes))
            raise NotFound(f"model {name!r} is not served by this gateway (known: {known})",
                           param="model", code="model_not_found") from None

    def __iter__(self) -> Iterator[tuple[str, Route]]:
        return iter(sorted(self.routes.items()))
