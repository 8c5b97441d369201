"""Configuration: defaults, overlay files, errors, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from thrifty_emulator import EmulatorConfig, EmulatorConfigError, config_from_dict, default_config, load_config, main


def test_default_models():
    config = default_config()
    assert isinstance(config, EmulatorConfig) and config.latency_scale == 1.0
    wires = {name: spec.wire for name, spec in config.models.items()}
    assert wires == {"gpt-4o": "openai", "gpt-4o-mini": "openai", "gpt-5-nano": "openai", "gpt-5-mini": "openai",
                     "llama-3.1-8b-instant": "openai", "claude-sonnet-4-5": "anthropic",
                     "claude-haiku-4-5": "anthropic", "claude-opus-4-1": "anthropic"}
    assert config.models["llama-3.1-8b-instant"].provider == "groq"
    assert config.models["gpt-5-mini"].reasoning and not config.models["gpt-4o"].reasoning
    assert config.models["claude-haiku-4-5"].cache_min_tokens == 4096
    assert config.models["claude-sonnet-4-5"].cache_min_tokens == 1024
    assert all(s.ttft_ms > 0 and s.tokens_per_s > 0 for s in config.models.values())
    assert config.find("anthropic", "claude-sonnet-4-5-20250929").name == "claude-sonnet-4-5"
    assert config.find("openai", "claude-sonnet-4-5") is None


def test_yaml_and_json_files_overlay_the_defaults(tmp_path):
    yaml_file = tmp_path / "e.yaml"
    yaml_file.write_text("""
latency_scale: 0.25
seed: 9
faults: {"500": 0.1}
models:
  gpt-4o: {ttft_ms: 10, faults: {"429": 0.5}}
  tiny-model: {wire: anthropic, tokens_per_s: 999}
""")
    config = load_config(yaml_file)
    assert config.latency_scale == 0.25 and config.seed == 9
    assert config.models["gpt-4o"].ttft_ms == 10 and config.models["gpt-4o"].tokens_per_s == 90
    assert config.models["gpt-4o"].faults == {"429": 0.5}
    assert config.models["gpt-4o-mini"].faults == {"500": 0.1}
    tiny = config.models["tiny-model"]
    assert (tiny.wire, tiny.provider, tiny.tokens_per_s, tiny.faults) == ("anthropic", "anthropic", 999, {"500": 0.1})
    json_file = tmp_path / "e.json"
    json_file.write_text(json.dumps({"openai_cache_ttl_s": 60}))
    assert load_config(json_file).openai_cache_ttl_s == 60


@pytest.mark.parametrize("raw, key", [
    ({"latency": 1}, ""),
    ({"latency_scale": -1}, "latency_scale"),
    ({"models": {"x": {"ttft_ms": 1}}}, "models.x.wire"),
    ({"models": {"gpt-4o": {"speed": 1}}}, "models.gpt-4o"),
    ({"models": {"gpt-4o": {"tokens_per_s": 0}}}, "models.gpt-4o.tokens_per_s"),
    ({"models": {"gpt-4o": {"faults": {"418": 0.1}}}}, "models.gpt-4o.faults.418"),
    ({"faults": {"429": 0.7, "500": 0.6}}, "faults"),
    ({"models": ["gpt-4o"]}, "models"),
])
def test_invalid_config_names_the_key(raw, key):
    with pytest.raises(EmulatorConfigError) as err:
        config_from_dict(raw)
    assert err.value.key == key


def test_unreadable_files(tmp_path):
    with pytest.raises(EmulatorConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(EmulatorConfigError, match="not valid"):
        load_config(bad)


def test_main_rejects_bad_input_with_one_line(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("thrifty emulate: config error:") and "\n" not in err
    assert main(["--latency-scale", "-1"]) == 2


def test_help_explains_the_options():
    out = subprocess.run([sys.executable, "-m", "thrifty_emulator", "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for word in ("--latency-scale", "--config", "--seed", "--port", "x-emulator-fault", "/_emulator/billing"):
        assert word in out.stdout


def test_a_port_out_of_range_is_a_usage_error_not_a_crash(capsys):
    from thrifty_emulator.cli import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--port", "99999"])
    assert e.value.code == 2
    assert "a port is 0-65535, not 99999" in capsys.readouterr().err
