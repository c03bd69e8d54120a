"""Both directions reach subscribers, through the worker as ``cwi run`` builds it (bootstrap): a CW
change pushed to the ERP, and an ERP change written to CW (with the CW fields written); the CW
event our own inbound write causes (an echo, not pushed) is not delivered a second time."""

from __future__ import annotations

import pytest

from tests.integration.publishing import ADMIN
from tests.integration.test_inbound import KEY, Rig, _seed, customer, rig
from tests.integration.webhook_receiver import Receiver
from worker.operators.subscriptions import Subscriptions

__all__ = ["rig"]


async def test_cw_changes_and_inbound_changes_are_delivered_once_each(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ALLOW_PRIVATE", "ALLOW_HTTP"):
        monkeypatch.setenv(f"CWI_PUBLISHER_{name}", "true")
    monkeypatch.setenv("CWI_PUBLISHER_DIRECTORY_S", "0")
    async with Receiver() as receiver:
        subs = Subscriptions(rig.app.db, rig.app.bus, rig.app.settings)
        issued = await subs.add(ADMIN, "acme", receiver.url, ["customer.*"], ["name"])
        receiver.secrets.append(issued.secret)
        assert rig.app.settings.secret == KEY

        await _seed(rig, "acme", "acme-c1")
        await rig.erp_change("acme", cw_id="acme-c1", data=customer("acme-c1", "Renamed in the ERP"))
        await rig.quiet()

    got = [(c.body["type"], c.body["source"], c.body["data"]) for c in receiver.delivered()]
    assert got == [
        ("customer.created", "frontend", {"id": "acme-c1", "name": "Acme AS"}),
        ("customer.updated", "webhook", {"id": "acme-c1", "name": "Renamed in the ERP"}),
    ], "the CW event of our inbound write is its echo: not delivered again"
    assert len(receiver.calls) == 2
