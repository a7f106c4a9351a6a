"""Request validation and response encoding of the OpenAI-compatible completions endpoint.

The request body follows OpenAI's ``POST /v1/completions`` (``prompt``, ``suffix``, ``n``,
``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed``, ``model``, ``user``). Types are checked
strictly by pydantic and unknown fields are rejected (422), so a typo such as ``max_token`` is an
error rather than silently ignored; ranges are checked against :class:`Limits` with messages that name
the field and the allowed range. Token-id prompts, streaming, ``logprobs`` and ``echo`` are not
supported and are rejected with a message saying so.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Job:
    """A validated request: what to generate and with which settings."""

    prompts: tuple[str, ...]
    suffix: str | None
    config: GenerationConfig
    seeded: bool  # an explicit seed: run alone so the same seed gives the same output


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
    if req.stream:
        raise RequestError("stream=true is not supported; omit it or send false", "stream")
    if req.echo:
        raise RequestError("echo=true is not supported", "echo")
    if req.logprobs is not None:
        raise RequestError(
            "logprobs is not supported; each choice carries its mean log-probability as score", "logprobs"
        )
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
    if len(prompts) * req.n > limits.max_candidates:
        raise RequestError(
            f"{len(prompts)} prompts x n={req.n} = {len(prompts) * req.n} candidates; "
            f"the limit is {limits.max_candidates}",
            "n",
        )
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
        n=req.n,
        max_new_tokens=req.max_tokens,
        temperature=float(req.temperature),
        top_p=float(req.top_p),
        stop=tuple(stops),
        seed=req.seed or 0,
        steps=diffusion_steps,
    )
    return Job(tuple(prompts), req.suffix, cfg, seeded=req.seed is not None)


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


def encode_response(job: Job, results: list[list[Candidate]], model: str, count_tokens: Any | None) -> dict[str, Any]:
    """The OpenAI ``text_completion`` object; each choice also carries its ``score``.

    Choices are ordered prompt by prompt, each prompt's ``n`` candidates best first, with
    ``index = prompt_index * n + rank`` as OpenAI does.
    """
    choices = []
    completion_total = 0
    for i, cands in enumerate(results):
        for j, c in enumerate(cands):
            ntok = c.extra.get("tokens") if isinstance(c.extra.get("tokens"), int) else None
            if ntok is None and count_tokens:
                ntok = count_tokens(c.text)
            completion_total += ntok or 0
            choices.append({
                "text": c.text,
                "index": i * job.config.n + j,
                "logprobs": None,
                "finish_reason": finish_reason(c, job.config, ntok),
                "score": c.score,
            })  # fmt: skip
    prompt_total = sum(count_tokens(p) for p in job.prompts) if count_tokens else 0
    return {
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


def error_body(
    message: str, param: str | None = None, kind: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error shape: the body of every error response the server sends."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
