"""JSON for the emulator: orjson, bytes out. Kept here so the emulator shares no code with the gateway."""

from __future__ import annotations

import orjson

loads = orjson.loads
dumps = orjson.dumps
JSONDecodeError = orjson.JSONDecodeError
