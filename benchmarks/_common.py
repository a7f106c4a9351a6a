"""Shared helpers of the performance benchmarks: machine description, the measured fp32 matmul peak,
interleaved timing with medians, a torch.profiler top-ops table, and JSON + markdown output.

Timing discipline (the machines these run on are often shared): the variants being compared run
interleaved, A B A B ..., each repeat timed on its own, and every ratio is a ratio of medians taken
in the same run. The load average is recorded before and after.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
# NL2CODE_DATA: another copy of shared/data (a device machine gets the data sets carried into the repo)
DATA = Path(os.environ.get("NL2CODE_DATA") or REPO.parent / "shared" / "data").resolve()


def set_threads(threads: int) -> int:
    """Use ``threads`` intra-op threads (0 = every core); returns the count in use."""
    torch.set_num_threads(threads or os.cpu_count() or 1)
    return torch.get_num_threads()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "nl2code": _version("nl2code"),
        "load_average": load_average(),
    }


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def matmul_peak(n: int = 2048, repeats: int = 10, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Measured matmul throughput of this machine: median FLOP/s of ``repeats`` ``n x n`` torch.mm."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)  # warm-up (allocator, kernel selection)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    flops = 2 * n**3
    return {
        "n": n,
        "dtype": str(dtype).removeprefix("torch."),
        "repeats": repeats,
        "flops_per_s": flops / median(times),
        "best_flops_per_s": flops / min(times),
        "runs_s": [round(t, 4) for t in times],
    }


def memory_bandwidth(megabytes: int = 256, repeats: int = 5) -> dict[str, Any]:
    """This machine's streaming memory bandwidth: bytes read + written per second by the fastest of
    ``repeats`` copies between two ``megabytes`` fp32 buffers (far larger than any cache)."""
    n = megabytes * 2**20 // 4
    src, dst = torch.randn(n), torch.empty(n)
    dst.copy_(src)  # warm-up: page in both buffers
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t)
    return {"megabytes": megabytes, "bytes_per_s": 2 * n * 4 / min(times), "runs_s": [round(t, 4) for t in times]}


def machine_peak(sizes: tuple[int, ...] = (1024, 2048, 4096), repeats: int = 5) -> dict[str, Any]:
    """This machine's fp32 matmul limit: the fastest ``n x n`` torch.mm over ``sizes`` (best of ``repeats`` each).

    The best run, not the median: other processes can only slow a run down, so the fastest one is the
    closest to what the cores can do; and several sizes, because one size can miss the kernel's sweet spot.
    """
    runs = [matmul_peak(n, repeats) for n in sizes]
    return {"flops_per_s": max(r["best_flops_per_s"] for r in runs), "by_size": runs}


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """Time each function ``repeats`` times, A B A B ..., after ``warmup`` untimed rounds.

    Returns name -> {median_s, runs_s, cpu_s}: wall seconds per call (median and every run) and the
    median process CPU seconds (all threads), which shows how much of the wall time we had the cores.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c, t = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return {
        k: {"median_s": median(wall[k]), "runs_s": [round(x, 4) for x in wall[k]], "cpu_s": round(median(cpu[k]), 4)}
        for k in fns
    }


HEAVY = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::_scaled_dot_product")


def profile_top(fn: Callable[[], Any], rows: int = 12) -> dict[str, Any]:
    """torch.profiler over one call of ``fn``.

    Returns ``top`` (the ``rows`` ops with the most self CPU time), ``total_ms`` (all self time) and
    ``matmul_ms`` / ``matmul_share``: self time in matrix multiplies and attention kernels (``HEAVY``),
    over every op, not only the top rows.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    heavy = sum(e.self_cpu_time_total for e in events if e.key.startswith(HEAVY))
    top = [
        {"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3, 2),
         "share": round(e.self_cpu_time_total / total, 4), "calls": e.count}
        for e in events[:rows]
    ]  # fmt: skip
    return {
        "top": top,
        "total_ms": round(total / 1e3, 2),
        "matmul_ms": round(heavy / 1e3, 2),
        "matmul_share": round(heavy / total, 4),
    }


def matmul_share(prof: dict[str, Any]) -> float:
    """Share of self CPU time in matrix multiplies and attention kernels (work both sides must do)."""
    return prof["matmul_share"]


def gap_analysis(
    ours_s: float,
    peer_s: float,
    prof_ours: dict[str, Any],
    prof_peer: dict[str, Any],
    target: float,
    others: str = "norms, activations, loss, optimizer, copies",
) -> dict[str, Any]:
    """What a profile says about a speed ratio ``peer_s / ours_s`` and a ``target`` for it.

    ``bound``: the ratio we would reach if every op of ours outside the matmul/attention kernels took
    no time at all (``peer_s / (ours_s * our matmul share)``); below ``target``, the target cannot be
    reached without faster matmuls. ``kernel_ratio``: peer / ours self time inside those kernels, taken
    from the two profiles directly (profiler overhead lands on the many small ops, so shares times the
    unprofiled medians would misstate it): near 1 means both sides run the same kernels on the same FLOPs.
    """
    share_o, share_p = prof_ours["matmul_share"], prof_peer["matmul_share"]
    bound = peer_s / (ours_s * share_o) if share_o else float("inf")
    ms_o = prof_ours.get("matmul_ms", ours_s * share_o * 1e3)
    ms_p = prof_peer.get("matmul_ms", peer_s * share_p * 1e3)
    kernel_ratio = ms_p / ms_o if ms_o else float("nan")
    same = 0.9 <= kernel_ratio <= 1.1
    text = (
        f"{100 * share_o:.0f}% of our time is in matmul/attention kernels (aten::mm, bmm, addmm, SDPA), the peer's "
        f"{100 * share_p:.0f}%; in those kernels the peer takes {kernel_ratio:.2f}x our time "
        f"({ms_p:,.0f} vs {ms_o:,.0f} ms in the profiles)"
        + (", the same kernels on the same FLOPs" if same else "")
        + f"; removing everything else from ours would give at most {bound:.2f}x the peer"
    )
    if bound < target:
        text += f", short of {target}x"
    else:
        # The bound allows the target only if most of the rest (``others``: ops the peer runs too) vanished;
        # say how much of it would have to go.
        rest = ours_s * (1 - share_o)
        need = (ours_s - peer_s / target) / rest if rest > 0 else 0.0
        text += (
            f"; {target}x would need {100 * max(need, 0.0):.0f}% of the other {100 * (1 - share_o):.0f}% of our step "
            f"({others}, which the peer also runs) to take no time"
        )
    return {
        "matmul_share": {"ours": share_o, "peer": share_p},
        "kernel_time_ratio": round(kernel_ratio, 3),
        "bound": round(bound, 3),
        "text": text,
    }


def target_row(name: str, value: float, threshold: float, cmp: str, explanation: str = "") -> dict[str, Any]:
    """One target verdict: ``value`` against ``threshold`` (``cmp`` is ">=" or "<=")."""
    met = value >= threshold if cmp == ">=" else value <= threshold
    return {
        "target": name,
        "value": value,
        "threshold": threshold,
        "cmp": cmp,
        "met": bool(met),
        "explanation": "" if met else explanation,
    }


def targets_md(rows: list[dict[str, Any]]) -> str:
    """The targets as a table: met or not, and where not, why (from the same run's profile)."""

    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    body = [
        [
            r["target"],
            fmt(r["value"]),
            f"{r['cmp']} {fmt(r['threshold'])}",
            {True: "met", False: "**not met**", None: "not assessable"}[r["met"]],
            r["explanation"] or "-",
        ]
        for r in rows
    ]
    return md_table(["target", "measured", "wanted", "verdict", "why not (from this run's profile)"], body)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB.

    Linux: ``VmHWM`` of /proc/self/status, the peak of this process image alone. ``ru_maxrss`` is not
    used there because exec carries the parent's peak into it: a child started from a parent holding
    300 MiB would report at least that. Elsewhere ``ru_maxrss`` (macOS reports bytes, others KiB).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if platform.system() == "Darwin" else 1024), 1)


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def profile_md(title: str, prof: dict[str, Any]) -> str:
    rows = [[r["op"][:60], r["self_ms"], f"{100 * r['share']:.1f}%", r["calls"]] for r in prof["top"]]
    head = (
        f"{title} {prof['total_ms']:,.0f} ms self CPU time in all, {100 * prof['matmul_share']:.1f}% in matmul and "
        "attention kernels."
    )
    return f"{head}\n\n" + md_table(["op", "self ms", "share", "calls"], rows)


def header_md(title: str, command: str, machine: dict[str, Any], notes: list[str] = ()) -> str:
    m = machine
    lines = [
        f"# {title}", "",
        f"Regenerate with `{command}`.", "",
        f"{m['date']} · {m['cpu']} · {m['cpus']} CPUs, {m['torch_threads']} torch threads · "
        f"Python {m['python']} · torch {m['torch']} · transformers {m['transformers']} · "
        f"load average before {m['load_average']}" + (f", after {m['load_after']}" if "load_after" in m else ""),
        "",
    ]  # fmt: skip
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + ("\n" if notes else "")


def write_results(name: str, data: dict[str, Any], markdown: str, out: Path = RESULTS) -> Path:
    """Write ``out/name.json`` and ``out/name.md``; returns the JSON path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown.rstrip() + "\n")
    return path


def child_json(cmd: list[str], cwd: Path = REPO) -> dict[str, Any]:
    """Run ``cmd`` (a benchmark's child process) and parse the JSON object on its last stdout line;
    exits with the child's stderr tail when it fails."""
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if res.returncode:
        raise SystemExit(f"child {cmd[2:4]} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])
