"""``register`` (the future ``cwi webhooks register CLIENT``) in-process against each fake ERP."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from config_db import clients, webhooks
from config_db.database import make_engine
from config_db.secrets import SecretBox
from tests.fakes.serve import KINDS, ServedFake, serve_in_thread
from tests.fakes.tripletex import FakeTripletex
from tests.fakes.uni_economy import FakeUni
from worker.cli.errors import CliError
from worker.cli.webhooks import register
from worker.webhook_endpoints import issue

SECRET_KEY = "register-secret-key-0123456789"
WEBHOOK_SECRET = "whsec-register-1"
URL = "http://127.0.0.1:9/webhooks/{kind}/tok-1"

pytestmark = pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module", params=KINDS)
def served(request: pytest.FixtureRequest) -> Iterator[ServedFake]:
    with serve_in_thread(request.param) as fake:
        yield fake


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, migrated_db_url: str) -> str:
    monkeypatch.setenv("CWI_DATABASE_URL", migrated_db_url)
    monkeypatch.setenv("CWI_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("CWI_LOG_FORMAT", "json")
    return migrated_db_url


def test_register_subscribes_or_prints_the_steps(
    env: str, served: ServedFake, capsys: pytest.CaptureFixture[str]
) -> None:
    served.provision(env, SECRET_KEY, {**served.credentials, "webhook_secret": WEBHOOK_SECRET})
    url = URL.format(kind=served.kind)

    register("acme", url=url)

    shown = " ".join(capsys.readouterr().out.split())
    assert shown.startswith(f"{served.kind}:") and url in shown
    assert WEBHOOK_SECRET not in shown
    fake = served.fake
    if isinstance(fake, FakeTripletex):
        assert {s["hmacSharedSecret"] for s in fake.subscriptions.values()} == {WEBHOOK_SECRET}
        assert {s["targetUrl"] for s in fake.subscriptions.values()} == {url}
    elif isinstance(fake, FakeUni):
        assert [p["SigningKey"] for p in fake.entities("eventplans")] == [WEBHOOK_SECRET]
    else:
        assert "Developer Portal" in shown


def test_register_without_a_webhook_secret_names_the_credential(env: str, served: ServedFake) -> None:
    served.provision(env, SECRET_KEY, served.credentials)

    with pytest.raises(CliError, match="no credential webhook_secret: add it with `cwi connections set acme"):
        register("acme", url=URL.format(kind=served.kind))


def test_register_without_url_issues_a_new_endpoint_and_secret(
    env: str, served: ServedFake, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CWI_PUBLIC_URL", "https://cwi.example/")
    served.provision(env, SECRET_KEY, served.credentials)

    register("acme", url=None)

    shown = " ".join(capsys.readouterr().out.split())
    engine = make_engine(env)
    with engine.begin() as conn:
        stored = clients.get_connection(conn, "acme")
    assert stored is not None
    secret = SecretBox(SECRET_KEY).decrypt(stored.credentials)["webhook_secret"]
    prefix = f"https://cwi.example/webhooks/{served.kind}/"
    fake = served.fake
    if isinstance(fake, FakeTripletex):
        ours = [s for s in fake.subscriptions.values() if s["targetUrl"].startswith(prefix)]
        [url] = {s["targetUrl"] for s in ours}
        assert {s["hmacSharedSecret"] for s in ours} == {secret}
    elif isinstance(fake, FakeUni):
        [plan] = fake.entities("eventplans")
        [url] = [sub["Endpoint"] for sub in plan["Subscribers"] if sub["Endpoint"].startswith(prefix)]
        assert plan["SigningKey"] == secret
    else:
        url = next(word for word in shown.split() if word.startswith(prefix))
    with engine.begin() as conn:
        endpoint = webhooks.find_endpoint(conn, url.removeprefix(prefix).rstrip(".,"))
    engine.dispose()
    assert endpoint is not None and (endpoint.client_id, endpoint.provider) == ("acme", served.kind)


def test_register_needs_a_connection(env: str, served: ServedFake) -> None:
    with pytest.raises(CliError, match="has no connection"):
        register("nobody", url="https://cwi.example/webhooks/x/y")


def test_a_failed_registration_leaves_the_url_the_erp_uses_working(env: str, served: ServedFake) -> None:
    fake = served.fake
    if not isinstance(fake, FakeTripletex | FakeUni):
        pytest.skip("Visma.net is registered by hand in its portal: nothing to fail")
    served.provision(env, SECRET_KEY, served.credentials)
    engine = make_engine(env)
    with engine.begin() as conn:
        issued = issue(conn, SecretBox(SECRET_KEY), "acme", rotate=False)  # the URL the ERP uses now
    if isinstance(fake, FakeTripletex):
        fake.fail_next(3, 400, on="POST /")  # the ERP refuses the new subscription
    else:
        fake.fail_next(3, 400)

    with pytest.raises(CliError, match="FAILED"):
        register("acme", url=None)

    with engine.begin() as conn:
        kept = webhooks.find_endpoint(conn, issued.token, grace=dt.timedelta(0))
        assert kept is not None, (
            "still the newest: the token issued for the failed registration was withdrawn"
        )
        assert len(webhooks.client_endpoints(conn, "acme")) == 1
    engine.dispose()
