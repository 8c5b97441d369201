"""Config loading: typed, ${ENV} interpolation, errors that name the file and the key, CLI exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from thrifty.cli.localstack import local_config
from thrifty.config import load_config
from thrifty.errors import ConfigError


def write(tmp_path, data) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(p)


def base() -> dict:
    return local_config("http://127.0.0.1:1", "sqlite:///:memory:")


def test_valid_config_and_env_interpolation(tmp_path, monkeypatch):
    monkeypatch.setenv("EMU_KEY", "secret-1")
    data = base()
    data["providers"]["openai"]["api_key"] = "${EMU_KEY}"
    data["providers"]["anthropic"]["api_key"] = "${MISSING_BUT_DEFAULTED:-fallback}"
    cfg = load_config(write(tmp_path, data))
    assert cfg.providers["openai"].api_key == "secret-1"
    assert cfg.providers["anthropic"].api_key == "fallback"
    assert cfg.deployments["llama-3.1-8b-instant"].price_provider == "groq"


@pytest.mark.parametrize("mutate,key,words", [
    (lambda d: d["providers"]["openai"].update(api_key="${NOT_SET_ANYWHERE}"), "providers.openai.api_key",
     "NOT_SET_ANYWHERE"),
    (lambda d: d["deployments"]["gpt-4o"].update(provider="azure"), "deployments.gpt-4o.provider", "azure"),
    (lambda d: d["aliases"].update(cheap="nope"), "aliases.cheap", "nope"),
    (lambda d: d["providers"]["openai"].update(timeout_s=-1), "providers.openai.timeout_s", "greater than"),
    (lambda d: d["server"].update(prot=1), "server.prot", "Extra inputs"),
    (lambda d: d.pop("keys"), "keys", "required"),
])
def test_errors_name_file_and_key(tmp_path, mutate, key, words):
    data = base()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == path and info.value.key == key and words in info.value.problem


def test_yaml_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "providers: [unclosed"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_serve_exits_non_zero_with_one_line_reason(tmp_path):
    data = base()
    data["deployments"]["gpt-4o"]["provider"] = "azure"
    path = write(tmp_path, data)
    r = subprocess.run([sys.executable, "-m", "thrifty", "serve", "--config", path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert path in r.stderr and "deployments.gpt-4o.provider" in r.stderr


def test_unknown_provider_kind(tmp_path):
    data = base()
    data["providers"]["openai"]["kind"] = "watsonx"
    path = write(tmp_path, data)
    r = subprocess.run([sys.executable, "-m", "thrifty", "serve", "--config", path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "providers.openai.kind" in r.stderr and "watsonx" in r.stderr
