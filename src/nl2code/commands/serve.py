"""``nl2code serve --run DIR``: an OpenAI-compatible completions server and web playground for a run."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from nl2code.cli import CLIError

EPILOG = """\
endpoints:
  GET  /                 the playground: type a description, see the candidates and their scores
  POST /v1/completions   OpenAI-compatible: prompt (str or list), n, temperature, top_p, max_tokens,
                         stop, seed, suffix (infill between prompt and suffix); choices carry a score
  GET  /v1/models        the served model
  GET  /health           status, limits and batching counters

example:
  nl2code serve --run runs/demo/codegen --port 8000
  curl -s localhost:8000/v1/completions -H 'content-type: application/json' \\
       -d '{"prompt": "Return the larger of two numbers.", "n": 3, "max_tokens": 64}'

errors: every error response has OpenAI's shape {"error": {"message", "type", "param", "code"}}: 4xx
for a bad request (naming the field), 408 for a body slower than --body-timeout, 413 for one over
--max-body, 429 while --max-queue requests wait. A request whose client disconnects is dropped.

The server binds 127.0.0.1 unless --host says otherwise; it runs generated text through no
interpreter (it only returns it).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from nl2code.rundir import LAYOUT

    p = sub.add_parser(
        "serve",
        help="serve a run over HTTP (OpenAI-compatible /v1/completions + web playground)",
        description="Load the model of a run directory and serve it over HTTP: an OpenAI-compatible "
        "completions endpoint that batches concurrent requests, a health check and a playground page.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        required=True,
        metavar="DIR",
        help=f"run directory ({LAYOUT}), e.g. runs/demo/codegen",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="device for the model (default auto = CUDA when available, else CPU)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="diffusion models: denoising steps per request, strided over the training T (default 20, at "
        "most T); ignored by AR models",
    )
    p.add_argument("--model-name", default=None, help="name in responses (default: the run directory's name)")
    p.add_argument("--max-batch", type=int, default=32, help="most prompts per model call (default 32)")
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=10.0,
        help="how long a request waits for others to join its batch (default 10)",
    )
    p.add_argument("--max-body", type=int, default=64 * 1024, help="largest request body in bytes (default 65536)")
    p.add_argument(
        "--max-queue",
        type=int,
        default=64,
        metavar="N",
        help="most requests waiting for the model; more are refused with 429 (default 64)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a request body may take to arrive; slower ones get 408 (default 10)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling seeds of unseeded requests")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = PyTorch's default)")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        missing = f"nl2code serve needs the serve extra ({e.name} is missing)"
        raise CLIError(f"{missing}: pip install 'nl2code[serve]'") from None

    from nl2code.api import GenerationConfig, RunError, load_generator
    from nl2code.commands.generate import check_settings, default_steps
    from nl2code.serve import Limits, create_app
    from nl2code.utils.device import resolve_device, set_threads

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in [0, 65535], got {args.port}")
    if args.max_batch < 1 or args.batch_wait_ms < 0 or args.max_body < 1024:
        raise CLIError("need --max-batch >= 1, --batch-wait-ms >= 0 and --max-body >= 1024")
    if args.max_queue < 1 or not args.body_timeout > 0:
        raise CLIError(f"need --max-queue >= 1 and --body-timeout > 0, got {args.max_queue} and {args.body_timeout}")
    if args.threads < 0:
        raise CLIError(f"--threads must be >= 0, got {args.threads}")
    set_threads(args.threads)
    if args.steps is not None and args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    try:
        generator = load_generator(args.run, device=resolve_device(args.device))
    except (RunError, RuntimeError) as e:
        raise CLIError(str(e)) from None
    args.steps = default_steps(generator, args.steps)
    check_settings(generator, GenerationConfig(steps=args.steps))  # not request by request, after binding
    name = args.model_name or Path(args.run).resolve().name
    app = create_app(
        generator,
        model_name=name,
        limits=Limits(max_body_bytes=args.max_body),
        max_batch_prompts=args.max_batch,
        max_wait_ms=args.batch_wait_ms,
        seed=args.seed,
        diffusion_steps=args.steps,
        max_queue=args.max_queue,
        body_timeout_s=args.body_timeout,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: binding {args.host}: the server is reachable from other machines and has no authentication",
            file=sys.stderr,
        )
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    print(
        f"serving {args.run} ({getattr(generator, 'kind', '?')}) as {name!r} on http://{args.host}:{port}/ "
        "(Ctrl+C to stop)",
        file=sys.stderr,
        flush=True,
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so port 0 can be resolved and printed before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise CLIError(f"cannot bind {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    return sock
