"""The gateway's ASGI app built from a config file, for servers that import their application.

granian (`thrifty serve --server granian`) loads `thrifty.api.factory:create_app` in its worker
process and calls it there; `thrifty serve` has already validated the config and put its absolute
path in the `THRIFTY_CONFIG` environment variable. Importing this module reads nothing: the config
is read, and the gateway built, only when the factory is called.
"""

from __future__ import annotations

import os

from thrifty.api.app import GatewayApp

CONFIG_ENV = "THRIFTY_CONFIG"
TARGET = "thrifty.api.factory:create_app"


def build_app(config_path: str) -> GatewayApp:
    """The gateway app for one config file. Opens nothing: the ledger and the provider
    connections start with the ASGI lifespan."""
    from thrifty.config import load_config
    from thrifty.core.gateway import Gateway

    config = load_config(config_path)
    return GatewayApp(Gateway(config, config_path=config_path))


def create_app() -> GatewayApp:
    """App factory: the gateway for the config file named by `$THRIFTY_CONFIG`."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set: it names the config file of the gateway "
                           f"(`thrifty serve --config FILE` sets it)")
    return build_app(path)
