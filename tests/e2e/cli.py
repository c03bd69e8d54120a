"""Running ``cwi`` as a user does: the real command line with its own environment.

``Cli.run`` calls the CLI in this process (typer's runner, the environment patched for the call:
the settings are read per command, as in a fresh process), which costs milliseconds instead of
a second of interpreter start-up and imports. ``Cli.run_process`` and ``Cli.start`` run it as a
subprocess, for the tests where the process boundary is the point: signals, SIGKILL, ``serve``,
two operators at once, ``demo``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from typer.testing import CliRunner

from config_db import clients
from config_db.database import make_engine
from config_db.secrets import SecretBox
from worker.cli.main import app

SECRET_KEY = "e2e-secret-key-0123456789"
TOKEN = "sandbox-token"


@dataclass
class Cli:
    db_url: str

    def variables(self, **extra: str) -> dict[str, str]:
        """The CWI_* variables of a run: no .env file, nothing of the caller's CWI_* but these."""
        return {
            "CWI_DATABASE_URL": self.db_url,
            "CWI_SECRET_KEY": SECRET_KEY,
            "CWI_LOG_FORMAT": "json",
            "CWI_ENV_FILE": "",
            "CWI_METRICS_PORT": "0",  # each `cwi run` serves its metrics on a free port, never on another's
            **extra,
        }

    def env(self, **extra: str) -> dict[str, str]:
        """A subprocess's whole environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CWI_")}
        env.update(self.variables(**extra))
        return env

    def run(
        self, *args: str, input: str | None = None, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """``cwi ARGS`` in this process; the result as a subprocess's would be."""
        patch: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CWI_")}
        patch.update(self.variables(**env))
        try:
            result = CliRunner().invoke(app, list(args), input=input, env=patch, catch_exceptions=True)
        finally:
            structlog.reset_defaults()  # the command's log stream was the runner's, now closed
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            exc = result.exception
            stderr += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        proc = subprocess.CompletedProcess(["cwi", *args], result.exit_code, result.stdout, stderr)
        return self._checked(proc, check)

    def run_process(
        self, *args: str, input: str | None = None, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """``cwi ARGS`` as a subprocess, for what only a process shows (its exit by a signal)."""
        proc = subprocess.run(
            [sys.executable, "-m", "worker.cli.main", *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(**env),
            timeout=120,
        )
        return self._checked(proc, check)

    @staticmethod
    def _checked(proc: subprocess.CompletedProcess[str], check: bool) -> subprocess.CompletedProcess[str]:
        if check and proc.returncode != 0:
            raise AssertionError(
                f"cwi {' '.join(proc.args[1:])} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.cli.main", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(**env),
        )

    @staticmethod
    def communicate_all(procs: Sequence[subprocess.Popen[str]], timeout: float) -> list[tuple[str, str]]:
        """(stdout, stderr) of each process, read at the same time: read one after the other, a
        chatty process fills its pipe (64 KiB) and blocks in a log write while holding its messages'
        locks, which the first one then waits for."""
        with ThreadPoolExecutor(max_workers=max(1, len(procs))) as pool:
            return list(pool.map(lambda proc: proc.communicate(timeout=timeout), procs))

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.run("status", "--json").stdout)
        return result

    def synclog(self, *args: str) -> list[dict[str, Any]]:
        out = self.run("synclog", "--json", "--limit", "100000", *args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def provision(self, sandbox_url: str, *clients: str) -> None:
        """Clients with generic_rest connections to the sandbox, through the CLI as a user would."""
        for client in clients:
            self.run("clients", "add", client)
            self.run(
                "connections",
                "set",
                client,
                "generic_rest",
                "--base-url",
                sandbox_url,
                "--credential",
                f"token={TOKEN}",
            )

    def provision_directly(self, sandbox_url: str, *names: str) -> None:
        """The same through config_db: many clients without a command each."""
        engine = make_engine(self.db_url)
        credentials = SecretBox(SECRET_KEY).encrypt({"token": TOKEN})
        with engine.begin() as conn:
            for name in names:
                clients.add_client(conn, name, name)
                stored = clients.StoredConnection(name, "generic_rest", sandbox_url, {}, credentials, True)
                clients.set_connection(conn, stored)
        engine.dispose()


def envelope(n: int, client: str = "acme", **over: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "id": f"{client}-e{n}",
        "client_id": client,
        "type": "customer.created",
        "source": "operator",
        "occurred_at": "2026-11-23T10:00:00Z",
        "data": {"id": f"{client}-c{n}", "number": str(1000 + n), "name": f"Customer {n}"},
    }
    env.update(over)
    return env


def jsonl(envs: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e) + "\n" for e in envs)
