"""The provider emulator: a local stand-in for the OpenAI and Anthropic APIs.

It speaks the chat-completions and messages wire formats (usage fields, prompt-caching rules,
streaming, errors, faults, latency) closely enough that the official SDKs cannot tell, and keeps
a billing counter of what each model would have invoiced. The gateway reaches it over HTTP only,
and this package imports nothing of the gateway: its usage fields are written from the providers'
documentation (usage.py), so a mapping bug on the gateway's side cannot hide behind the same bug here.

    python -m thrifty_emulator --port 8001 [--config FILE] [--latency-scale 0] [--seed 0]

Billing (GET /_emulator/billing): a request is billed when the provider would bill it: a
successful answer, streamed or not. Injected 429/5xx and `timeout` faults are counted in
`faults`, dropped answers (`drop` fault) in `dropped`, and answers the client abandoned in
`cancelled`; none of these is billed. See billing.py for why.
"""

from __future__ import annotations

from thrifty_emulator.app import EmulatorApp, build_app
from thrifty_emulator.cli import main
from thrifty_emulator.errors import EmulatorConfigError
from thrifty_emulator.faults import FAULT_DELAY_HEADER, FAULT_HEADER, FAULT_KINDS
from thrifty_emulator.models import EmulatorConfig, ModelSpec, config_from_dict, default_config, load_config

__all__ = ["EmulatorApp", "EmulatorConfig", "EmulatorConfigError", "FAULT_DELAY_HEADER", "FAULT_HEADER",
           "FAULT_KINDS", "ModelSpec", "build_app", "config_from_dict", "default_config", "load_config", "main"]
