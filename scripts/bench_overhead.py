"""Gateway overhead against calling the simulated upstream directly, measured side by side.

    python scripts/bench_overhead.py [--duration 10] [--concurrency 1 16 64]

Layout on a 2-core machine: the gateway is pinned to core 0 (`taskset -c 0`, one uvicorn worker,
SQLite ledger on), the simulated upstream and the load generator (`wrk`, C) share core 1. Each
configuration runs twice: straight at the simulator, then through the gateway (explicit deployment,
no cache: pure pass-through). Overhead = gateway latency - direct latency at the same percentile.
The gateway's own CPU use during each run is read from /proc, so a saturated gateway is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16}
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, key: str, body: dict, connections: int, duration: int, workdir: Path) -> dict:
    return wrk_run(url, WRK_SCRIPT.format(body=json.dumps(body), key=key), connections, duration, workdir)


def wrk_run(url: str, script_text: str, connections: int, duration: int, workdir: Path) -> dict:
    """One wrk run on core 1 with the given Lua script: latency percentiles (ms), req/s and errors."""
    script = workdir / "post.lua"
    script.write_text(script_text)
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
         "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # fmt: skip
    percentiles = {int(p): _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = sum(
        int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|Socket errors:.*?timeout)\D+(\d+)", out)
    )
    return {
        "p50": percentiles[50],
        "p90": percentiles[90],
        "p99": percentiles[99],
        "rps": rps,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--tokens", type=int, default=16, help="Tokens per simulated response.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install wrk")

    workdir = Path(tempfile.mkdtemp(prefix="tiergate-bench-"))
    sim_port, gw_port = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = []
    gateway_log = (workdir / "gateway.log").open("w")
    try:
        procs.append(
            subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    "1",
                    sys.executable,
                    "-m",
                    "gateway.simulator.cli",
                    "--port",
                    str(sim_port),
                    "--min-tokens",
                    str(args.tokens),
                    "--max-tokens",
                    str(args.tokens),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        config = workdir / "tiergate.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "database_url": f"sqlite+aiosqlite:///{workdir}/ledger.db",
                    "spool_dir": str(workdir / "spool"),
                    "response_cache": False,  # pure pass-through: no cache in front of the upstream
                    "deployments": [
                        {
                            "name": "bench",
                            "provider": "openai",
                            "model": "gpt-4o-mini",
                            "api_base": f"http://127.0.0.1:{sim_port}/v1",
                            "api_key_env": "BENCH_UPSTREAM_KEY",
                            "max_retries": 0,
                        }
                    ],
                }
            )
        )
        gw_env = {**env, "BENCH_UPSTREAM_KEY": "sk-bench", "TIERGATE_ADMIN_KEY": "bench-admin"}
        gateway = subprocess.Popen(
            [
                "taskset",
                "-c",
                "0",
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                "--config",
                str(config),
                "--port",
                str(gw_port),
                "--log-level",
                "WARNING",
            ],
            env=gw_env,
            stdout=subprocess.DEVNULL,
            stderr=gateway_log,
        )
        procs.append(gateway)
        wait_http(f"http://127.0.0.1:{sim_port}/_sim/health")
        wait_http(f"http://127.0.0.1:{gw_port}/health")
        key = httpx.post(
            f"http://127.0.0.1:{gw_port}/admin/keys",
            json={"team": "bench"},
            headers={"authorization": "Bearer bench-admin"},
        ).json()["key"]

        direct_url = f"http://127.0.0.1:{sim_port}/v1/chat/completions"
        gateway_url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        results = []
        for stream in (False, True):
            body = {**BODY, "stream": stream}
            for c in args.concurrency:
                wrk(
                    gateway_url, key, body, c, 2, workdir
                )  # warm-up: connections, caches, JIT-free but lazy imports
                direct = wrk(direct_url, "sk-bench", body, c, args.duration, workdir)
                cpu0, t0 = cpu_seconds(gateway.pid), time.monotonic()
                through = wrk(gateway_url, key, body, c, args.duration, workdir)
                gateway_cpu = (cpu_seconds(gateway.pid) - cpu0) / (time.monotonic() - t0)
                results.append(
                    {
                        "stream": stream,
                        "concurrency": c,
                        "direct": direct,
                        "gateway": through,
                        "gateway_cpu": round(gateway_cpu, 2),
                        "overhead_p50_ms": round(through["p50"] - direct["p50"], 3),
                        "overhead_p99_ms": round(through["p99"] - direct["p99"], 3),
                    }
                )
                print(json.dumps(results[-1]), flush=True)
        rows = httpx.get(f"http://127.0.0.1:{gw_port}/health").json()
        print(f"\nledger spool pending: {rows['ledger_spool_pending_rows']}")
        print(
            "\n| mode | conc. | direct p50 / p99 ms | gateway p50 / p99 ms | added p50 / p99 ms | direct req/s | gateway req/s | gateway CPU |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in results:
            d, g = r["direct"], r["gateway"]
            print(
                f"| {'stream' if r['stream'] else 'json'} | {r['concurrency']} | {d['p50']:.2f} / {d['p99']:.2f} | "
                f"{g['p50']:.2f} / {g['p99']:.2f} | {r['overhead_p50_ms']:.2f} / {r['overhead_p99_ms']:.2f} | "
                f"{d['rps']:.0f} | {g['rps']:.0f} | {r['gateway_cpu'] * 100:.0f}% |"
            )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
        gateway_log.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
