"""Running ``cwi`` as a user does: a subprocess with its own environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from config_db import clients
from config_db.database import make_engine
from config_db.secrets import SecretBox

SECRET_KEY = "e2e-secret-key-0123456789"
TOKEN = "sandbox-token"


@dataclass
class Cli:
    db_url: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CWI_")}
        # CWI_METRICS_PORT 0: each `cwi run` serves its metrics on a free port, never on another's.
        env.update(CWI_DATABASE_URL=self.db_url, CWI_SECRET_KEY=SECRET_KEY, CWI_LOG_FORMAT="json")
        env.update({"CWI_METRICS_PORT": "0", **extra})
        return env

    def run(
        self, *args: str, input: str | None = None, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "worker.cli.main", *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(**env),
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"cwi {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
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
        """The same through config_db in-process: many clients without a CLI start each."""
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
