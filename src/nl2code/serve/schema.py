"""Request validation and response encoding of the OpenAI-compatible completions endpoint.

The request body follows OpenAI's ``POST /v1/completions`` (``prompt``, ``suffix``, ``n``,
``best_of``, ``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed``, ``stream``, ``logprobs``,
``echo``, ``model``, ``user``, ``frequency_penalty``, ``presence_penalty``, ``logit_bias``). Types are
checked strictly by pydantic and unknown fields are rejected (422), so a typo such as ``max_token`` is
an error rather than silently ignored; ranges are checked against :class:`Limits` with messages that
name the field and the allowed range.

Honoured: ``best_of`` (that many candidates are generated, the ``n`` best by score returned),
``logprobs`` (the model's log-probability of every returned token, with the ``logprobs`` most likely
alternatives; autoregressive models only), ``echo`` (the prompt is prepended to the text, and with
``logprobs`` its tokens are scored too; ``max_tokens: 0`` then scores the prompt alone, as
lm-eval-harness' log-likelihood mode asks), ``stream`` (server-sent events). Accepted but without effect:
``frequency_penalty``, ``presence_penalty`` and ``logit_bias`` (a non-zero penalty or a non-empty bias
is listed in the response's ``ignored`` field) and ``user``. ``POST /v1/chat/completions``
(:class:`ChatRequest`) answers the last user message as a plain prompt: the models have no chat format.
Token-id prompts are not supported.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr

from nl2code.api import Candidate, GenerationConfig


@dataclass(frozen=True)
class Limits:
    """Bounds on one request; larger requests get a 4xx with the bound in the message."""

    max_body_bytes: int = 64 * 1024
    max_prompts: int = 16
    max_prompt_chars: int = 4000
    max_n: int = 16
    max_tokens: int = 512
    max_stop: int = 4
    max_stop_chars: int = 64
    max_candidates: int = 64  # prompts x n
    max_logprobs: int = 5  # OpenAI's own bound on completions' logprobs


class RequestError(ValueError):
    """A request the server refuses: ``status`` (4xx), the offending ``param``, a message and optionally
    OpenAI's ``type``/``code`` (default ``invalid_request_error``, no code)."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: int = 422,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ):
        super().__init__(message)
        self.param, self.status, self.kind, self.code = param, status, kind, code


class CompletionRequest(BaseModel):
    """The body of ``POST /v1/completions`` (types only; ranges are checked by :func:`to_job`)."""

    model_config = ConfigDict(extra="forbid")

    prompt: StrictStr | list[StrictStr]
    suffix: StrictStr | None = None
    model: StrictStr | None = None
    n: StrictInt = 1
    temperature: StrictFloat | StrictInt = 1.0
    top_p: StrictFloat | StrictInt = 1.0
    max_tokens: StrictInt = 128
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    stream: StrictBool = False
    echo: StrictBool = False
    logprobs: StrictInt | None = None
    user: StrictStr | None = None
    best_of: StrictInt | None = None
    frequency_penalty: StrictFloat | StrictInt | None = None
    presence_penalty: StrictFloat | StrictInt | None = None
    logit_bias: dict[StrictStr, StrictFloat | StrictInt] | None = None
    stream_options: dict[StrictStr, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, tool_call_id ... carry nothing a plain prompt uses

    role: StrictStr
    content: StrictStr | None = None


class ChatRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``: the last ``user`` message becomes the prompt."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage]
    model: StrictStr | None = None
    n: StrictInt = 1
    temperature: StrictFloat | StrictInt = 1.0
    top_p: StrictFloat | StrictInt = 1.0
    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    stream: StrictBool = False
    stream_options: dict[StrictStr, Any] | None = None
    user: StrictStr | None = None
    frequency_penalty: StrictFloat | StrictInt | None = None
    presence_penalty: StrictFloat | StrictInt | None = None
    logit_bias: dict[StrictStr, StrictFloat | StrictInt] | None = None


def chat_to_completion(req: ChatRequest) -> CompletionRequest:
    """The completion request a chat request stands for: the last user message's content as the prompt."""
    users = [m.content for m in req.messages if m.role == "user" and m.content]
    if not users:
        raise RequestError("messages: needs a user message with text content (the prompt)", "messages")
    return CompletionRequest(
        prompt=users[-1],
        model=req.model,
        n=req.n,
        temperature=req.temperature,
        top_p=req.top_p,
        max_tokens=req.max_completion_tokens or req.max_tokens or 128,
        stop=req.stop,
        seed=req.seed,
        user=req.user,
        frequency_penalty=req.frequency_penalty,
        presence_penalty=req.presence_penalty,
        logit_bias=req.logit_bias,
    )


@dataclass(frozen=True)
class Job:
    """A validated request: what to generate and with which settings."""

    prompts: tuple[str, ...]
    suffix: str | None
    config: GenerationConfig
    seeded: bool  # an explicit seed: run alone so the same seed gives the same output
    n: int = 0  # candidates returned per prompt (config.n is best_of when that is larger); 0 = config.n
    echo: bool = False
    logprobs: int | None = None
    score_only: bool = False  # max_tokens 0 with echo: nothing is generated, the prompt is scored
    ignored: tuple[str, ...] = ()  # accepted fields that had no effect

    @property
    def returned(self) -> int:
        return self.n or self.config.n


def _check_range(name: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise RequestError(f"{name} must be in {bracket}{low}, {high}], got {value}", name)


def _check_text(req: CompletionRequest) -> None:
    """Refuse lone UTF-16 surrogates (JSON's ``"\\ud800"``) in every string field: they are not text,
    and the tokenizer cannot take them."""
    for name in ("prompt", "suffix", "stop", "model", "user"):
        value = getattr(req, name)
        items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for i, text in enumerate(items):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                where = name if isinstance(value, str) else f"{name}[{i}]"
                raise RequestError(
                    f"{where}: contains a lone surrogate ({text[e.start]!r} at character {e.start}); "
                    "strings must be valid Unicode",
                    name,
                    400,
                ) from None


def to_job(req: CompletionRequest, limits: Limits, diffusion_steps: int | None = None) -> Job:
    """Range-check a parsed request and turn it into a :class:`Job` (``diffusion_steps``: the server's)."""
    _check_text(req)
    if req.logprobs is not None:
        _check_range("logprobs", req.logprobs, 0, limits.max_logprobs)
    if req.echo and req.suffix is not None:
        raise RequestError("echo cannot be combined with suffix", "echo")
    ignored = tuple(
        name
        for name, value in (("frequency_penalty", req.frequency_penalty), ("presence_penalty", req.presence_penalty))
        if value not in (None, 0)
    ) + (("logit_bias",) if req.logit_bias else ())
    prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
    if not 1 <= len(prompts) <= limits.max_prompts:
        raise RequestError(
            f"prompt must be a string or a list of 1 to {limits.max_prompts} strings, got {len(prompts)}", "prompt"
        )
    for i, p in enumerate(prompts):
        if not p.strip():
            raise RequestError(f"prompt[{i}] is empty", "prompt")
        if len(p) > limits.max_prompt_chars:
            raise RequestError(f"prompt[{i}] has {len(p)} characters; the limit is {limits.max_prompt_chars}", "prompt")
    if req.suffix is not None and len(req.suffix) > limits.max_prompt_chars:
        raise RequestError(f"suffix has {len(req.suffix)} characters; the limit is {limits.max_prompt_chars}", "suffix")
    _check_range("n", req.n, 1, limits.max_n)
    best_of = req.n if req.best_of is None else req.best_of
    if req.best_of is not None:
        _check_range("best_of", req.best_of, req.n, limits.max_n)
        if req.stream and req.best_of > req.n:
            raise RequestError("best_of > n cannot be streamed (OpenAI refuses it too)", "best_of")
    if len(prompts) * best_of > limits.max_candidates:
        raise RequestError(
            f"{len(prompts)} prompts x n={best_of} = {len(prompts) * best_of} candidates; "
            f"the limit is {limits.max_candidates}",
            "best_of" if req.best_of is not None else "n",
        )
    score_only = req.echo and req.max_tokens == 0
    if not score_only:
        _check_range("max_tokens", req.max_tokens, 1, limits.max_tokens)
    _check_range("temperature", float(req.temperature), 0.0, 2.0)
    _check_range("top_p", float(req.top_p), 0.0, 1.0, low_open=True)
    stops = [] if req.stop is None else [req.stop] if isinstance(req.stop, str) else list(req.stop)
    if len(stops) > limits.max_stop:
        raise RequestError(f"stop has {len(stops)} strings; the limit is {limits.max_stop}", "stop")
    for s in stops:
        if not 1 <= len(s) <= limits.max_stop_chars:
            raise RequestError(f"each stop string must have 1 to {limits.max_stop_chars} characters", "stop")
    if req.seed is not None:
        _check_range("seed", req.seed, 0, 2**63 - 1)
    cfg = GenerationConfig(
        n=best_of,
        max_new_tokens=max(1, req.max_tokens),
        temperature=float(req.temperature),
        top_p=float(req.top_p),
        stop=tuple(stops),
        seed=req.seed or 0,
        steps=diffusion_steps,
    )
    return Job(
        tuple(prompts),
        req.suffix,
        cfg,
        seeded=req.seed is not None,
        n=req.n,
        echo=req.echo,
        logprobs=req.logprobs,
        score_only=score_only,
        ignored=ignored,
    )


def finish_reason(cand: Candidate, cfg: GenerationConfig, completion_tokens: int | None) -> str:
    """OpenAI's ``"length"`` when the token budget ran out, else ``"stop"`` (eos or a stop string).

    Backends that know say so in ``extra["finish"]`` (AR: ``length``, ``stop_token``, ``stop_string``);
    otherwise a candidate that used the whole budget counts as cut by length.
    """
    reason = cand.extra.get("finish")
    if isinstance(reason, str):
        return "length" if reason == "length" else "stop"
    if completion_tokens is not None and completion_tokens >= cfg.max_new_tokens:
        return "length"
    return "stop"


def openai_logprobs(scored: dict[str, list], echo: bool) -> dict[str, list]:
    """OpenAI's completions ``logprobs`` object from a generator's ``token_logprobs``: the completion's
    tokens, or with ``echo`` the prompt's too; ``text_offset`` counts characters from the text's start."""
    start = 0 if echo else scored["prompt_tokens"][0]
    tokens = scored["tokens"][start:]
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    return {
        "tokens": tokens,
        "token_logprobs": scored["token_logprobs"][start:],
        "top_logprobs": scored["top_logprobs"][start:],
        "text_offset": offsets,
    }


def encode_response(
    job: Job,
    results: list[list[Candidate]],
    model: str,
    count_tokens: Any | None,
    logprobs: list[list[dict]] | None = None,
) -> dict[str, Any]:
    """The OpenAI ``text_completion`` object; each choice also carries its ``score``.

    Choices are ordered prompt by prompt, each prompt's ``n`` candidates best first (the best ``n`` of
    ``best_of``), with ``index = prompt_index * n + rank`` as OpenAI does. ``logprobs``: per prompt and
    candidate, the :func:`openai_logprobs` object.
    """
    choices = []
    completion_total = 0
    for i, all_cands in enumerate(results):
        cands = all_cands[: job.returned]
        for j, c in enumerate(cands):
            ntok = c.extra.get("tokens") if isinstance(c.extra.get("tokens"), int) else None
            if ntok is None and count_tokens:
                ntok = count_tokens(c.text)
            completion_total += ntok or 0
            choices.append({
                "text": job.prompts[i] + c.text if job.echo else c.text,
                "index": i * job.returned + j,
                "logprobs": logprobs[i][j] if logprobs is not None else None,
                "finish_reason": "length" if job.score_only else finish_reason(c, job.config, ntok),
                "score": c.score,
            })  # fmt: skip
    prompt_total = sum(count_tokens(p) for p in job.prompts) if count_tokens else 0
    body = {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_total,
            "completion_tokens": completion_total,
            "total_tokens": prompt_total + completion_total,
        },
    }
    if job.ignored:
        body["ignored"] = list(job.ignored)
    return body


def chat_response(completion: dict[str, Any]) -> dict[str, Any]:
    """The ``chat.completion`` object for a completion body (each choice's text as the assistant's message)."""
    choices = [
        {
            "index": c["index"],
            "message": {"role": "assistant", "content": c["text"]},
            "logprobs": None,
            "finish_reason": c["finish_reason"],
            "score": c["score"],
        }
        for c in completion["choices"]
    ]
    body = {**completion, "id": "chat" + completion["id"], "object": "chat.completion", "choices": choices}
    return body


def sse_events(body: dict[str, Any], chat: bool = False) -> list[str]:
    """Server-sent events for ``stream: true``: one chunk per choice (its whole text; the candidates are
    ranked only once all are generated), then ``[DONE]``, in OpenAI's chunk shapes."""
    head = {k: body[k] for k in ("id", "created", "model")}
    events = []
    for c in body["choices"]:
        if chat:
            delta = {"role": "assistant", "content": c["message"]["content"]}
            choice = {"index": c["index"], "delta": delta, "logprobs": None, "finish_reason": c["finish_reason"]}
            chunk = {**head, "object": "chat.completion.chunk", "choices": [choice]}
        else:
            chunk = {**head, "object": "text_completion", "choices": [c]}
        events.append(f"data: {json.dumps(chunk)}\n\n")
    return [*events, "data: [DONE]\n\n"]


def error_body(
    message: str, param: str | None = None, kind: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error shape: the body of every error response the server sends."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
