"""What the benchmarks share: ports, processes, wrk, statistics, the machine's description."""
from __future__ import annotations

import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token-0123456789"
PASSWORD = "bench-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra) -> dict:
    """The environment without the caller's GEEKAI_* settings, with the benchmark's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
    env.update(NO_PROXY="127.0.0.1", GEEKAI_API_TOKEN=TOKEN, GEEKAI_ADMIN_PASSWORD=PASSWORD,
               GEEKAI_SECRET_KEY="bench-secret-key")
    env.update(extra)
    return env


def wait_ok(url: str, proc: subprocess.Popen | None = None, timeout: float = 60, headers=None) -> float:
    """Poll until `url` answers 200; the perf_counter() of that answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Spread:
    """Samples of one figure: median and min-max."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, digits: int = 0, scale: float = 1.0) -> str:
        fmt = f"{{:.{digits}f}}"
        low, high = min(self.values) * scale, max(self.values) * scale
        return f"{fmt.format(self.median * scale)} ({fmt.format(low)}–{fmt.format(high)})"


def ratio_spread(ours: Spread, theirs: Spread) -> Spread:
    """Round-by-round ratios of two interleaved series."""
    return Spread([a / b for a, b in zip(ours.values, theirs.values) if b])


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(url: str, seconds: float, connections: int = 16, threads: int = 2, headers=None) -> WrkResult:
    """One wrk run against `url` (Debian's wrk: apt-get install wrk)."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors += int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    return WrkResult(rate, _percentile(out, "50%"), _percentile(out, "99%"), errors)


def _percentile(out: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\b", out, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def machine() -> str:
    """This machine and its load, for the report's header."""
    model = ""
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.machine()}, {os.cpu_count()} CPUs ({model or 'unknown model'}), "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}; load average {load}")


def python() -> str:
    return sys.executable


def print_result(result: dict, digits: int = 2) -> None:
    """A benchmark's table and its checks against their targets, for running one script by hand."""
    print(result["table"])
    for name, value, target, ok in result["checks"]:
        print(f"{name}: {value:.{digits}f} (target {target}) {'ok' if ok else 'MISSED'}")
