from thrifty.contract.usage import Usage
from thrifty.wire.anthropic_usage import usage_from_anthropic, usage_to_anthropic
from thrifty.wire.openai_chat import usage_from_openai, usage_to_openai


def test_openai_usage_splits_cached_and_reasoning():
    u = usage_from_openai({"prompt_tokens": 2000, "completion_tokens": 300, "total_tokens": 2300,
                           "prompt_tokens_details": {"cached_tokens": 1152},
                           "completion_tokens_details": {"reasoning_tokens": 200}})
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (848, 1152, 300, 200)
    assert u.prompt_tokens == 2000
    assert usage_from_openai(usage_to_openai(u)) == u


def test_anthropic_usage_keeps_write_ttls_apart():
    u = usage_from_anthropic({"input_tokens": 50, "cache_read_input_tokens": 1000,
                              "cache_creation_input_tokens": 3000, "output_tokens": 70,
                              "cache_creation": {"ephemeral_5m_input_tokens": 1000,
                                                 "ephemeral_1h_input_tokens": 2000}})
    assert (u.cache_write_5m_tokens, u.cache_write_1h_tokens, u.prompt_tokens) == (1000, 2000, 4050)
    assert usage_from_anthropic(usage_to_anthropic(u)) == u


def test_anthropic_usage_without_breakdown_counts_writes_as_5m():
    u = usage_from_anthropic({"input_tokens": 5, "cache_creation_input_tokens": 1500, "output_tokens": 1})
    assert (u.cache_write_5m_tokens, u.cache_write_1h_tokens) == (1500, 0)
    assert usage_from_anthropic(None) == Usage()
