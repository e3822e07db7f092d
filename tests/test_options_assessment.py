"""The options-flow assessment: the real openai client against a local server, and the fallback."""
import json

import pytest

from data.options import load_option_chain
from explain import ExplainerConfig
from explain.options import assess_options_flow, options_evidence
from options_flow.analysis import analyze_options_flow
from tests.openai_stub_server import StubOpenAIServer


@pytest.fixture(scope="module")
def result():
    return analyze_options_flow(load_option_chain("demo", "DEMO", as_of="2024-03-01"))


@pytest.fixture
def server():
    with StubOpenAIServer() as stub:
        yield stub


def test_without_a_model_the_builtin_assessment_states_the_flags(result):
    out = assess_options_flow(result, "DEMO")
    assert out.source == "built-in" and out.fallback_reason == "no model configured"
    assert out.risk == result.risk_score
    assert all(flag in out.text for flag in result.flags)


def test_model_answer_is_used_and_its_risk_blended(result, server):
    evidence = options_evidence(result, "DEMO")
    answer = {"kind": "manipulation_suspected", "confidence": "high", "risk_score": 0.9,
              "recommended_action": "escalate", "key_evidence": [f"calls {evidence['call_share_pct']}% of volume"],
              "explanation": f"Calls are {evidence['call_share_pct']}% of volume and "
                             f"{evidence['unusual_contracts']} contracts traded far above their open interest. "
                             "This looks like positioning ahead of news."}
    server.answer(json.dumps(answer))
    config = ExplainerConfig(api_key="sk-test", base_url=server.base_url, model="gpt-test", timeout=2.0)
    out = assess_options_flow(result, "DEMO", config)
    assert (out.source, out.grounded) == ("gpt-test", True)
    stat = sum(result.scores.values()) / len(result.scores)
    assert out.risk == pytest.approx(0.6 * stat + 0.4 * 0.9)
    sent = server.requests[0].body["messages"][1]["content"]
    assert "unusual_options_activity" in sent


def test_server_error_falls_back_to_builtin_with_the_reason(result, server):
    for _ in range(3):
        server.enqueue({"error": {"message": "boom", "type": "server_error", "param": None, "code": None}},
                       status=500)
    config = ExplainerConfig(api_key="sk-test", base_url=server.base_url, model="gpt-test", timeout=2.0)
    out = assess_options_flow(result, "DEMO", config)
    assert out.source == "built-in" and "500" in out.fallback_reason
    assert out.risk == result.risk_score
