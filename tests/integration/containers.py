"""Microsoft's Service Bus emulator (and the SQL Server it keeps its state in), started with testcontainers.

Only where a Docker engine answers; the guide runs testcontainers tests there and nowhere else,
so without Docker the connected suites skip, even with CI=true. The emulator's entities come from
its Config.json: the queues the connected suites use, with a short lock (so that lock tests can
wait it out) and a small MaxDeliveryCount.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EMULATOR_IMAGE = "mcr.microsoft.com/azure-messaging/servicebus-emulator:latest"
SQL_IMAGE = "mcr.microsoft.com/mssql/server:2022-latest"
AMQP_PORT = 5672
LOCK_S = 5
MAX_DELIVERY_COUNT = 3
READY_LINE = "Emulator Service is Successfully Up!"


def docker_answers() -> bool:
    """A Docker engine is reachable (the docker package is a testcontainers dependency)."""
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean "no Docker"
        return False


def _queue(name: str, *, sessions: bool) -> dict[str, Any]:
    return {
        "Name": name,
        "Properties": {
            "DeadLetteringOnMessageExpiration": False,
            "DefaultMessageTimeToLive": "PT1H",
            "DuplicateDetectionHistoryTimeWindow": "PT20S",
            "ForwardDeadLetteredMessagesTo": "",
            "ForwardTo": "",
            "LockDuration": f"PT{LOCK_S}S",
            "MaxDeliveryCount": MAX_DELIVERY_COUNT,
            "RequiresDuplicateDetection": False,
            "RequiresSession": sessions,
        },
    }


def emulator_config(queue: str, session_queue: str) -> dict[str, Any]:
    namespace = {
        "Name": "sbemulatorns",
        "Queues": [_queue(queue, sessions=False), _queue(session_queue, sessions=True)],
        "Topics": [],
    }
    return {"UserConfig": {"Namespaces": [namespace], "Logging": {"Type": "File"}}}


@contextmanager
def servicebus_emulator(queue: str, session_queue: str) -> Iterator[str]:
    """Start SQL Server and the emulator on one network; yield the emulator's connection string."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network
    from testcontainers.core.waiting_utils import wait_for_logs

    password = "Cwi-" + secrets.token_urlsafe(12) + "1a!"
    config_dir = Path(tempfile.mkdtemp(prefix="cwi-sbemulator-"))
    config = config_dir / "Config.json"
    config.write_text(json.dumps(emulator_config(queue, session_queue)))
    with Network() as network:
        sql = (
            DockerContainer(SQL_IMAGE)
            .with_env("ACCEPT_EULA", "Y")
            .with_env("MSSQL_SA_PASSWORD", password)
            .with_network(network)
            .with_network_aliases("sqledge")
        )
        with sql:
            emulator = (
                DockerContainer(EMULATOR_IMAGE)
                .with_env("ACCEPT_EULA", "Y")
                .with_env("SQL_SERVER", "sqledge")
                .with_env("MSSQL_SA_PASSWORD", password)
                .with_volume_mapping(str(config), "/ServiceBus_Emulator/ConfigFiles/Config.json", "ro")
                .with_exposed_ports(AMQP_PORT)
                .with_network(network)
            )
            with emulator:
                wait_for_logs(emulator, READY_LINE, timeout=180)
                host = emulator.get_container_host_ip()
                port = emulator.get_exposed_port(AMQP_PORT)
                yield (
                    f"Endpoint=sb://{host}:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
                    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
                )
