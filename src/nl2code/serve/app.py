"""The HTTP layer over one :class:`nl2code.api.Generator`: decode request -> batch -> encode response.

Routes: ``POST /v1/completions`` and ``POST /v1/chat/completions`` (OpenAI-compatible, ``stream``
as server-sent events; see :mod:`nl2code.serve.schema`), ``GET /v1/models``, ``GET /health`` and the
playground page at ``GET /``. Every error response, from a refused field to an unknown route or an
unexpected failure, has OpenAI's error shape ``{"error": {"message", "type", "param", "code"}}``:
refusals are 4xx with a message that names the field; the body is capped in size (413) and in the
time it may take to arrive (408, connection closed) before anything parses it; a full queue is 429;
a request whose client disconnects is withdrawn from the batcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nl2code.api import Candidate, GenerationConfig, Generator, check_config
from nl2code.serve.batcher import Batcher
from nl2code.serve.schema import (
    ChatRequest,
    CompletionRequest,
    Limits,
    RequestError,
    chat_response,
    chat_to_completion,
    encode_response,
    error_body,
    openai_logprobs,
    sse_events,
    to_job,
)

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: read the whole body of POST/PUT/PATCH requests before the app sees it.

    A body over ``max_bytes`` (declared or streamed) is answered 413, unread by the app; a body that
    has not fully arrived ``timeout_s`` after the request started is answered 408 (a half-sent body
    would otherwise hold the connection open for good). Both close the connection, since the rest of
    the body may still be on its way. A chunked body is read up to the limit here and replayed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 10.0):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    @staticmethod
    async def _reject(send: Callable[[dict], Awaitable[None]], status: int, message: str) -> None:
        body = json.dumps(error_body(message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        too_big = f"request body larger than {self.max_bytes} bytes"
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                oversized = int(declared) > self.max_bytes
            except ValueError:
                oversized = True  # an unreadable length is refused rather than trusted
            if oversized:
                await self._reject(send, 413, too_big)
                return
        deadline = time.monotonic() + self.timeout_s  # for the whole body: a trickle must not reset it
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
            except asyncio.TimeoutError:
                await self._reject(send, 408, f"request body not received within {self.timeout_s:g} s")
                return
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._reject(send, 413, too_big)
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


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _disconnected(receive: Callable[[], Awaitable[dict]]) -> None:
    """Return when the client goes away (the body was read already, so only a disconnect comes)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Awaitable[Any]) -> Any:
    """Await ``work`` unless the client disconnects first: then cancel it and raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()  # the client left (or this handler was cancelled): withdraw the request
    if task.done() and not task.cancelled():
        return task.result()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # let the cancellation reach the batcher before answering
    raise ClientGone


def _parse_failure(exc: BaseException | None) -> str:
    """Why FastAPI could not read a body (it reports only "There was an error parsing the body")."""
    if isinstance(exc, UnicodeDecodeError):
        return f"request body is not valid UTF-8 ({exc.reason} at byte {exc.start})"
    if isinstance(exc, RecursionError):
        return "JSON body is nested too deeply"
    return "cannot parse the request body as JSON"


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
    max_queue: int = 64,
    body_timeout_s: float = 10.0,
) -> FastAPI:
    """The app serving ``generator`` (its worker starts with the app's lifespan).

    Args:
        generator: the loaded model (``nl2code.api.load_generator``).
        model_name: the name in responses and ``/v1/models``.
        limits: request bounds (default :class:`Limits`).
        max_batch_prompts: most prompts answered by one model call.
        max_wait_ms: how long the worker waits for more requests to join a batch.
        seed: seeds the generator of per-batch sampling seeds for unseeded requests.
        diffusion_steps: denoising steps of diffusion models (None = the training T); a number the
            model cannot take raises ValueError here, not on every request.
        max_queue: most requests waiting for the model; more get 429.
        body_timeout_s: how long a request body may take to arrive (then 408).
    """
    limits = limits or Limits()
    check_config(generator, GenerationConfig(steps=diffusion_steps))
    if body_timeout_s <= 0:
        raise ValueError(f"body_timeout_s must be > 0, got {body_timeout_s}")
    batcher = Batcher(generator, np.random.default_rng(seed), max_batch_prompts, max_wait_ms, max_queue)
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
        headers = {"retry-after": "1"} if exc.status == 429 else None
        return JSONResponse(
            error_body(str(exc), exc.param, exc.kind, exc.code), status_code=exc.status, headers=headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            message = _parse_failure(exc.__cause__)
        elif exc.status_code == 404:
            message = f"no route {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return JSONResponse(error_body(message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_crash(_: Request, exc: Exception) -> JSONResponse:  # logged by the server, not sent
        return JSONResponse(error_body("internal server error", None, "server_error"), status_code=500)

    scorer = getattr(generator, "token_logprobs", None)

    async def complete(req: CompletionRequest, request: Request) -> dict[str, Any] | JSONResponse:
        """The completion body for ``req``, or the error response to send instead."""
        job = to_job(req, limits, diffusion_steps)
        if job.logprobs is not None and scorer is None:
            raise RequestError("logprobs needs an autoregressive (codegen) model", "logprobs")
        try:
            if job.score_only:  # echo + max_tokens 0: nothing to generate
                results = [[Candidate("", 0.0, {"tokens": 0})] * job.returned for _ in job.prompts]
            else:
                results = await until_disconnect(request, batcher.submit(job))
            scored = None
            if job.logprobs is not None:
                top, echo = job.logprobs, job.echo

                def score() -> list[list[dict]]:
                    return [
                        [openai_logprobs(scorer(p, c.text, top), echo) for c in cands[: job.returned]]
                        for p, cands in zip(job.prompts, results, strict=True)
                    ]

                scored = await asyncio.to_thread(score)
        except ClientGone:  # nobody reads this; 499 is nginx's "client closed request"
            return JSONResponse(error_body("client closed the request"), status_code=499)
        except RequestError:
            raise
        except Exception as e:  # a failure inside the model: say so instead of dropping the connection
            return JSONResponse(
                error_body(f"generation failed: {type(e).__name__}: {e}", None, "server_error"), status_code=500
            )
        return encode_response(job, results, model_name, count_tokens, scored)

    def respond(body: dict[str, Any] | JSONResponse, stream: bool, chat: bool) -> Response:
        if isinstance(body, Response):
            return body
        if chat:
            body = chat_response(body)
        if stream:
            return StreamingResponse(iter(sse_events(body, chat)), media_type="text/event-stream")
        return JSONResponse(body)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request) -> Response:
        return respond(await complete(req, request), req.stream, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, request: Request) -> Response:
        return respond(await complete(chat_to_completion(req), request), req.stream, chat=True)

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
            "max_queue": batcher.max_queue,
            "uptime_s": round(time.time() - started, 1),
            "limits": limits.__dict__,
            "stats": batcher.stats.as_dict(),
        }

    @app.get("/", response_class=HTMLResponse)
    async def playground() -> HTMLResponse:
        return HTMLResponse(page)

    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, timeout_s=body_timeout_s)
    return app
