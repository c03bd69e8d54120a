"""The console in a real browser: Debian's chromium driven by Playwright, one browser per session.

Skips without /usr/bin/chromium locally, fails with CI=true (``make test`` installs it as root).
Screenshots of every page go to tests/e2e/artifacts/console/ (git ignores them).
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config_db.database import make_engine
from config_db.migrate import upgrade
from tests.browser.oidc_provider import CLIENT_ID, Provider, oidc_provider
from tests.conftest import require_service
from tests.servers import serve_sandbox

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[1] / "e2e" / "artifacts" / "console"
ADMIN_KEY = "console-admin-key-7d1f"
VIEWER_KEY = "console-viewer-key-2b9c"
SECRET_KEY = "console-secret-key-0123456789"
SANDBOX_TOKEN = "sandbox-token"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One browser for the browser tests (they are one module). Module-scoped, not session-scoped:
    Playwright's sync API keeps an event loop running in this thread while it is open, and the
    asyncio tests that run after this module need the thread free."""
    require_service(os.path.exists(CHROMIUM), f"Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield launched
        launched.close()


@dataclass
class Console:
    url: str
    db_url: str
    sandbox: str
    oidc: Provider
    proc: subprocess.Popen[str]

    def shot(self, page: Any, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, browser: Any, background_loop: asyncio.AbstractEventLoop
) -> Iterator[Console]:
    """`cwi serve --worker` (the console, the admin API and the worker) on a migrated SQLite
    database, the sandbox ERP (in this process, tests/servers.py), and a local OpenID Connect provider."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('console') / 'cwi.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    engine.dispose()
    with serve_sandbox(background_loop, token=SANDBOX_TOKEN) as erp, oidc_provider() as idp:
        sandbox = erp.base_url
        env = {k: v for k, v in os.environ.items() if not k.startswith("CWI_")}
        env.update(
            CWI_ENV_FILE="", CWI_DATABASE_URL=db_url, CWI_SECRET_KEY=SECRET_KEY, CWI_ADMIN_API_KEY=ADMIN_KEY,
            CWI_VIEWER_API_KEY=VIEWER_KEY, CWI_CONSOLE_EDIT_RETRY="true", CWI_OIDC_ISSUER=idp.issuer,
            CWI_OIDC_CLIENT_ID=CLIENT_ID, CWI_CONNECTION_CACHE_S="0", CWI_RETRY_DELAYS="1",
            CWI_INPROCESS_ATTEMPTS="1", CWI_LOG_FORMAT="json", CWI_CONCURRENCY="4",
        )  # fmt: skip
        cmd = [sys.executable, "-m", "worker.cli.main", "serve", "--port", "0", "--worker"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stderr is not None
        stderr = proc.stderr

        def pump() -> None:
            for line in stderr:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        try:
            while True:
                line = lines.get(timeout=60)
                if found := re.search(r"listening on (http://\S+)", line):
                    break
            yield Console(found.group(1) + "/console", db_url, sandbox, idp, proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
