"""The stack a benchmark run measures: a scratch database, its agents and operator, ltpdash's
daphne (two of them in scale-out) and the bare reference daphne beside it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from coordination.processes import daphne_command, free_port, wait_until_serving  # noqa: E402

OPERATOR = ("bench-op", "bench-pass-1")
_TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def start_daphne(
    env: dict, workdir: Path, app: str | None = None, log: str = "daphne.log"
) -> tuple[subprocess.Popen, int]:
    """A quiet daphne (no access log) on a free port, its errors in workdir/<log>; `app`
    replaces ltpdash's ASGI application (the bare reference)."""
    port = free_port()
    command = daphne_command("127.0.0.1", port, access_log=False)
    if app is not None:
        command[-1] = app
        env = {**env, "PYTHONPATH": os.pathsep.join([str(SCRIPTS), env.get("PYTHONPATH", "")])}
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / log).open("w"),
    )
    return server, port


def scratch(scale_out: bool, rate_limit: int) -> tuple[Path, dict]:
    """A scratch directory and the environment of a fresh database for a run: in scale-out,
    a database made anew on DATABASE_URL's server (named after LTPDASH_TEST_SUFFIX, so
    worktrees side by side do not share one), and REDIS_URL's layer."""
    workdir = Path(tempfile.mkdtemp(prefix="ltpdash-bench-"))
    env = {**os.environ, "LTPDASH_DATA_DIR": str(workdir), "LTPDASH_RATE_LIMIT": str(rate_limit)}
    if not scale_out:
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        return workdir, env
    server = urlsplit(env.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    name = "ltpdash_bench" + re.sub(r"\W", "", env.get("LTPDASH_TEST_SUFFIX", ""))
    env["DATABASE_URL"] = urlunsplit(server._replace(path=f"/{name}"))
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/2")
    psql = ["psql", urlunsplit(server._replace(path="/postgres")), "-qc"]
    subprocess.run([*psql, f"DROP DATABASE IF EXISTS {name}"], check=False, capture_output=True)
    subprocess.run([*psql, f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return workdir, env


_SEED = """
import json, os
from django.core.management import call_command
from django.db import transaction
from coordination.models import Agent
names = json.loads(os.environ["BENCH_AGENTS"])
with transaction.atomic():
    tokens = {n: Agent.create_with_token(n, scope="*")[1] for n in names}
user, password = json.loads(os.environ["BENCH_OPERATOR"])
call_command("createoperator", user, "--role", "admin", "--password", password)
print("BENCH-TOKENS " + json.dumps(tokens))
"""


def seed(env: dict, names: list[str]) -> dict[str, str]:
    """Agents (scoped to every coordination, so any may speak anywhere) and one admin
    operator, in one process; the agents' tokens by name."""
    out = manage(
        {**env, "BENCH_AGENTS": json.dumps(names), "BENCH_OPERATOR": json.dumps(OPERATOR)},
        "shell",
        "-c",
        _SEED,
    )
    line = next(x for x in out.splitlines() if x.startswith("BENCH-TOKENS "))
    return json.loads(line.split(" ", 1)[1])


@dataclass
class Stack:
    """The servers of one run: ltpdash (`main`), a second ltpdash process on the same
    database and layer (`other`, scale-out only), and the bare reference."""

    env: dict
    workdir: Path
    tokens: dict[str, str]
    processes: dict[str, tuple[subprocess.Popen, int]] = field(default_factory=dict)

    def ws(self, name: str = "main") -> str:
        return f"ws://127.0.0.1:{self.processes[name][1]}"

    def http(self, name: str = "main") -> str:
        return f"http://127.0.0.1:{self.processes[name][1]}"

    def pid(self, name: str = "main") -> int:
        return self.processes[name][0].pid

    def start(self, name: str, app: str | None = None) -> None:
        server, port = start_daphne(self.env, self.workdir, app, log=f"{name}.log")
        self.processes[name] = (server, port)
        wait_until_serving("127.0.0.1", port, server)

    def stop(self) -> None:
        for server, _ in self.processes.values():
            server.terminate()
        for server, _ in self.processes.values():
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def build(scale_out: bool, names: list[str]) -> Stack:
    """Migrate a scratch database, seed it, start the servers."""
    workdir, env = scratch(scale_out, rate_limit=1_000_000)
    manage(env, "migrate", "--no-input", "-v0")
    stack = Stack(env, workdir, seed(env, names))
    try:
        stack.start("main")
        stack.start("bare", app="bench_bare:application")
        if scale_out:
            stack.start("other")
    except Exception:
        stack.stop()
        raise
    return stack
