"""CPU per request of the whole `canvas-tui sync` process, start-up included (issue 14).

    .venv/bin/python benchmarks/bench_sync_cpu.py [--records 2000] [--scales 1,2,5] [--runs 2]
        [--base /work/wt/base] [--profile DIR]

`canvas-tui sync` (the real command, its own process) runs a bench_sync workload against
`canvas-tui simulate` on loopback in the latency-bound world (POST cost 0.1, latency 0.5 world s).
The figure is the sync process's user + system CPU seconds (os.wait4's rusage of the child, so
imports, config, the journal load and the report all count) divided by the requests the simulator
counted. `--base DIR` alternates each run with the same command run by an older checkout (its own
.venv and source), so "before" and "after" share the machine's load. `--profile DIR` runs each
sync under `py-spy record --gil` (`.venv/bin/pip install py-spy`; raw folded stacks; `--top
FILE...` prints the layers and functions that hold the GIL longest); its CPU column is then not a
figure (py-spy's overhead).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import TOKEN, WorldSpec, simulator, workload, write_inputs

from canvas_tui.simulator.testing import simulator_stats

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Code:
    label: str
    root: Path  # a checkout: its .venv runs its own canvas_tui

    @property
    def python(self) -> Path:
        return self.root / ".venv" / "bin" / "python"

    def bytecode_env(self) -> dict[str, str]:
        """Cached bytecode, as an installed package has, kept outside the checkout."""
        prefix = Path(tempfile.gettempdir()) / "bench-sync-cpu-pycache" / self.label
        return {"PYTHONPYCACHEPREFIX": str(prefix), "PYTHONDONTWRITEBYTECODE": ""}

    def compile(self) -> None:
        env = dict(os.environ, **self.bytecode_env())
        env.pop("PYTHONDONTWRITEBYTECODE")
        subprocess.run(
            [str(self.python), "-m", "compileall", "-q", str(self.root / "canvas_tui")],
            env=env,
            check=True,
        )


@dataclass
class Run:
    code: str
    scale: float
    cpu: float  # user + system seconds of the sync process
    wall: float
    requests: int
    enrolled: int
    throttled: int
    ratio: float  # T*/T over the process's whole wall time
    switches: int = 0  # voluntary context switches of the sync process (its threads')

    @property
    def ms_per_request(self) -> float:
        return 1000 * self.cpu / max(1, self.requests)


def run_sync(code: Code, spec: WorldSpec, csv_path: Path, work: Path, profile: Path | None) -> Run:
    with simulator(spec) as base:
        env = dict(
            os.environ,
            CANVAS_BASE_URL=base,
            CANVAS_API_TOKEN=TOKEN,
            PYTHONPATH=str(code.root),
            # no user config, state or journals from the machine
            HOME=str(work),
            XDG_CONFIG_HOME=str(work / "config"),
            XDG_STATE_HOME=str(work / "state"),
            XDG_DATA_HOME=str(work / "data"),
        )
        env.update(code.bytecode_env())
        env.pop("PYTHONDONTWRITEBYTECODE")
        env.pop("CANVAS_TUI_CONFIG", None)
        command = [str(code.python), "-m", "canvas_tui", "sync", str(csv_path)]
        command += ["--journal", str(work / "sync.journal"), "--log-format", "json"]
        if profile is not None:
            out = profile / f"{code.label}-scale{spec.time_scale:g}-{time.time_ns()}.txt"
            # --gil: only the thread running Python (CPU, not waits); --nonblocking: no pauses
            command = ["py-spy", "record", "--format", "raw", "--gil", "--nonblocking"]
            command += ["-r", "200", "-o", str(out), "--"]
            command += [str(code.python), "-m", "canvas_tui", "sync", str(csv_path)]
            command += ["--journal", str(work / "sync.journal"), "--log-format", "json"]
            command[0] = str(Path(sys.executable).parent / "py-spy")
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            assert process.stderr is not None
            raise SystemExit(f"sync exited {process.returncode}: {process.stderr.read()[-2000:]}")
        stats = simulator_stats(base)
    enrolled = int(stats["enrollments_created"])
    return Run(
        code=code.label,
        scale=spec.time_scale,
        cpu=usage.ru_utime + usage.ru_stime,
        wall=wall,
        requests=int(stats["requests"]),
        enrolled=enrolled,
        throttled=int(stats["throttled"]),
        ratio=spec.t_star(enrolled) / wall,
        switches=usage.ru_nvcsw,
    )


def _frame(text: str) -> str:
    """`func (path/to/file.py:12)` -> `file.py:func`."""
    name, _, where = text.partition(" (")
    return f"{where.rsplit('/', 1)[-1].split(':')[0]}:{name}"


def top_entries(folded: Path, limit: int = 15) -> list[tuple[str, float, float]]:
    """(function, self %, total %) from py-spy's raw (folded) output, by total time."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in folded.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    rows = [(f, 100 * own[f] / samples, 100 * t / samples) for f, t in total.items()]
    return sorted(rows, key=lambda r: -r[1])[:limit]  # by self time: where the CPU goes


# where a frame's file lives -> the group it is counted in (first match wins)
GROUPS = (
    ("importlib", "imports (start-up)"),
    ("canvas_tui/engine/journal", "journal (part C)"),
    ("canvas_tui/canvas/", "canvas_tui.canvas (client, governor, transport)"),
    ("canvas_tui/", "canvas_tui, other (runner, plan, sources, headless)"),
    ("httpx/", "httpx"),
    ("httpcore/", "httpcore"),
    ("h11/", "h11"),
    ("anyio/", "anyio"),
    ("aiohttp/", "aiohttp"),
    ("tenacity/", "tenacity"),
    ("sqlalchemy/", "sqlalchemy"),
    ("asyncio/", "asyncio (the event loop)"),
)


def top_groups(folded: Path) -> list[tuple[str, float, float]]:
    """(group, self %, total %): self = samples whose innermost frame is in the group."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0

    def group(frame: str) -> str:
        where = frame.partition(" (")[2]
        return next((name for key, name in GROUPS if key in where), "other (stdlib, C)")

    for line in folded.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        groups = [group(f) for f in stack.split(";")]
        samples += count
        own[groups[-1]] += count
        for name in set(groups):
            total[name] += count
    rows = [(g, 100 * own[g] / samples, 100 * total[g] / samples) for g in own]
    return sorted(rows, key=lambda r: -r[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--scales", default="2", help="time scales, comma-separated")
    parser.add_argument("--runs", type=int, default=2, help="runs of each code at each scale")
    parser.add_argument("--latency", type=float, default=0.5, help="POST latency, world s")
    parser.add_argument("--base", type=Path, help="an older checkout to alternate with")
    parser.add_argument("--profile", type=Path, help="py-spy record into this directory")
    parser.add_argument("--top", type=Path, nargs="*", help="print top entries of folded files")
    args = parser.parse_args(argv)
    if args.top:
        for path in args.top:
            print(f"{path.name}\n| group | self % | total % |\n|---|---:|---:|")
            for name, own, total in top_groups(path):
                print(f"| {name} | {own:.1f} | {total:.1f} |")
            print("| function | self % | total % |\n|---|---:|---:|")
            for name, own, total in top_entries(path):
                print(f"| `{name}` | {own:.1f} | {total:.1f} |")
        return 0
    codes = [Code("after", ROOT)]
    if args.base is not None:
        codes.insert(0, Code("before", args.base.resolve()))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    for code in codes:
        code.compile()
    records = workload(args.records)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-sync-cpu-") as tmp:
        csv_path, _ = write_inputs(records, Path(tmp))
        for scale in (float(s) for s in args.scales.split(",")):
            spec = WorldSpec("latency-bound", 0.1, 429, args.latency, scale, args.records)
            for number in range(args.runs):
                for code in codes:
                    work = Path(tmp) / f"{code.label}-{scale:g}-{number}"
                    work.mkdir()
                    run = run_sync(code, spec, csv_path, work, args.profile)
                    runs.append(run)
                    print(
                        f"  {code.label:6} scale {scale:g} run {number + 1}: "
                        f"{run.ms_per_request:.2f} ms CPU/request ({run.cpu:.2f} s, "
                        f"{run.requests} requests), wall {run.wall:.1f} s, T*/T {run.ratio:.2f}, "
                        f"{run.switches / max(1, run.requests):.1f} voluntary switches/request, "
                        f"enrolled {run.enrolled}, throttled {run.throttled}",
                        file=sys.stderr,
                        flush=True,
                    )
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"records {args.records}, latency {args.latency} world s; load average {' '.join(load)}")
    print(
        "| code | time scale | run | CPU s | requests | CPU ms/request | wall s | T*/T "
        "| voluntary switches/request |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    counters: collections.Counter[tuple[str, float]] = collections.Counter()
    for r in runs:
        counters[(r.code, r.scale)] += 1
        print(
            f"| {r.code} | {r.scale:g} | {counters[(r.code, r.scale)]} | {r.cpu:.2f} "
            f"| {r.requests} | {r.ms_per_request:.2f} | {r.wall:.1f} | {r.ratio:.2f} "
            f"| {r.switches / max(1, r.requests):.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
