"""The server driven by the official ``openai`` Python client (the dev extra installs it): completions with
n > 1, best_of, logprobs and echo, streaming, the optional fields clients send by default, and chat."""

from __future__ import annotations

import math

import pytest

openai = pytest.importorskip("openai", reason="the openai client is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def client(server):
    url, _ = server
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_completions_n_and_the_fields_clients_send_by_default(client):
    r = client.completions.create(
        model="tiny", prompt="Return the sum of two numbers.", n=3, max_tokens=12, temperature=0.8, seed=7,
        frequency_penalty=0, presence_penalty=0, logit_bias={}, user="someone", best_of=4,
    )  # fmt: skip
    assert [c.index for c in r.choices] == [0, 1, 2] and r.object == "text_completion"
    assert all(isinstance(c.text, str) and c.finish_reason in ("stop", "length") for c in r.choices)
    scores = [c.model_extra["score"] for c in r.choices]
    assert scores == sorted(scores, reverse=True)  # the 3 best of 4
    assert "ignored" not in r.model_extra
    r = client.completions.create(model="tiny", prompt="x y", max_tokens=2, frequency_penalty=0.5)
    assert r.model_extra["ignored"] == ["frequency_penalty"]


def test_completion_logprobs_are_the_models(client):
    r = client.completions.create(model="tiny", prompt="Sort a list.", max_tokens=8, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text
    assert all(v <= 0 and math.isfinite(v) for v in lp.token_logprobs)
    # greedy: every chosen token is the most likely one, so it heads its top-2
    assert all(len(t) == 2 and max(t.values()) == pytest.approx(v, abs=1e-4) for t, v in
               zip(lp.top_logprobs, lp.token_logprobs))  # fmt: skip
    assert lp.text_offset[0] == 0


def test_echo_with_zero_tokens_scores_the_prompt(client):
    """lm-eval-harness' log-likelihood request: echo, max_tokens 0, logprobs 0."""
    r = client.completions.create(model="tiny", prompt="def add(a, b):", max_tokens=0, echo=True, logprobs=0)
    choice = r.choices[0]
    assert choice.text == "def add(a, b):"
    assert choice.logprobs.token_logprobs[0] is None and len(choice.logprobs.tokens) >= 3
    assert all(v < 0 for v in choice.logprobs.token_logprobs[1:])


def test_stream_sends_every_choice_then_done(client):
    full = client.completions.create(model="tiny", prompt="Parse a date.", n=2, max_tokens=10, temperature=0)
    chunks = list(client.completions.create(model="tiny", prompt="Parse a date.", n=2, max_tokens=10,
                                            temperature=0, stream=True))  # fmt: skip
    texts = {c.choices[0].index: c.choices[0].text for c in chunks}
    assert texts == {c.index: c.text for c in full.choices}


def test_chat_answers_the_last_user_message(client):
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Reverse a string."}]
    r = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0, n=2)
    plain = client.completions.create(model="tiny", prompt="Reverse a string.", max_tokens=10, temperature=0, n=2)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert [c.message.content for c in r.choices] == [c.text for c in plain.choices]
    one = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0)
    stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0, stream=True)
    assert [c.choices[0].delta.content for c in stream] == [one.choices[0].message.content]
    with pytest.raises(openai.UnprocessableEntityError, match="user message"):
        client.chat.completions.create(model="tiny", messages=[{"role": "system", "content": "x"}], max_tokens=4)
