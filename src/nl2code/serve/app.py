"""The HTTP layer over one :class:`nl2code.api.Generator`: decode request -> batch -> encode response.

Routes: ``POST /v1/completions`` (OpenAI-compatible), ``GET /v1/models``, ``GET /health`` and the
playground page at ``GET /``. Every refusal is a 4xx with OpenAI's error shape and a message that
names the field; the body size is capped before anything parses it (413).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from nl2code.api import Generator
from nl2code.serve.batcher import Batcher
from nl2code.serve.schema import CompletionRequest, Limits, RequestError, encode_response, error_body, to_job

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: answer 413 to bodies over ``max_bytes`` (declared or streamed) unread by the app.

    A declared ``Content-Length`` is checked up front; a chunked body is read up to the limit here
    and replayed to the app, so the app never sees an oversized body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, send: Callable[[dict], Awaitable[None]]) -> None:
        body = json.dumps(error_body(f"request body larger than {self.max_bytes} bytes")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = True  # an unreadable length is refused rather than trusted
            if too_big:
                await self._reject(send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# Fields whose type is a union: pydantic reports every member's failure; say what is accepted instead.
_EXPECTED = {
    "prompt": "a string or a list of strings (token-id prompts are not supported)",
    "stop": "a string, a list of strings or null",
    "temperature": "a number",
    "top_p": "a number",
}


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str | None]:
    """(status, message, param) for pydantic errors: 400 for unreadable JSON, 422 otherwise."""
    errors = exc.errors()
    for e in errors:
        if e.get("type") == "json_invalid":
            return 400, f"malformed JSON body: {e.get('ctx', {}).get('error', e.get('msg'))}", None
    parts: dict[str, str] = {}  # one message per top-level field (unions report one error per member)
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        field = loc[0] if loc else "body"
        if field in parts:
            continue
        if e.get("type") == "extra_forbidden":
            parts[field] = f"{field}: unknown field (allowed: {', '.join(CompletionRequest.model_fields)})"
        elif e.get("type") == "missing":
            parts[field] = f"{field}: required"
        elif field in _EXPECTED:
            parts[field] = f"{field}: expected {_EXPECTED[field]}"
        else:
            parts[field] = f"{'.'.join(loc) or 'body'}: {e.get('msg')}"
    first = next(iter(parts), None)
    return 422, "; ".join(list(parts.values())[:3]) or "invalid request", (None if first == "body" else first)


def token_counter(generator: Generator) -> Callable[[str], int] | None:
    """``text -> number of tokens`` from the generator's tokenizer, when it exposes one."""
    tok = getattr(generator, "tokenizer", None) or getattr(getattr(generator, "run", None), "tokenizer", None)
    encode = getattr(tok, "encode", None)
    if encode is None:
        return None
    return lambda text: len(encode(text))


def playground_html() -> str:
    return resources.files("nl2code.serve").joinpath("playground.html").read_text(encoding="utf-8")


def create_app(
    generator: Generator,
    *,
    model_name: str = "nl2code",
    limits: Limits | None = None,
    max_batch_prompts: int = 32,
    max_wait_ms: float = 10.0,
    seed: int = 0,
    diffusion_steps: int | None = None,
) -> FastAPI:
    """The app serving ``generator`` (its worker starts with the app's lifespan).

    Args:
        generator: the loaded model (``nl2code.api.load_generator``).
        model_name: the name in responses and ``/v1/models``.
        limits: request bounds (default :class:`Limits`).
        max_batch_prompts: most prompts answered by one model call.
        max_wait_ms: how long the worker waits for more requests to join a batch.
        seed: seeds the generator of per-batch sampling seeds for unseeded requests.
        diffusion_steps: denoising steps of diffusion models (None = the training T).
    """
    limits = limits or Limits()
    batcher = Batcher(generator, np.random.default_rng(seed), max_batch_prompts, max_wait_ms)
    count_tokens = token_counter(generator)
    started = time.time()
    page = playground_html()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="nl2code", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, param = _validation_message(exc)
        return JSONResponse(error_body(message, param), status_code=status)

    @app.exception_handler(RequestError)
    async def on_refused(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(error_body(str(exc), exc.param), status_code=exc.status)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> JSONResponse:
        job = to_job(req, limits, diffusion_steps)
        try:
            results = await batcher.submit(job)
        except RequestError:
            raise
        except Exception as e:  # a failure inside the model: say so instead of dropping the connection
            return JSONResponse(
                error_body(f"generation failed: {type(e).__name__}: {e}", None, "server_error"), status_code=500
            )
        return JSONResponse(encode_response(job, results, model_name, count_tokens))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "created": int(started), "owned_by": "nl2code"}],
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model_name,
            "kind": getattr(generator, "kind", None),
            "queued": batcher.queued(),
            "uptime_s": round(time.time() - started, 1),
            "limits": limits.__dict__,
            "stats": batcher.stats.as_dict(),
        }

    @app.get("/", response_class=HTMLResponse)
    async def playground() -> HTMLResponse:
        return HTMLResponse(page)

    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    return app
