"""The operator console in a real browser (chromium, Playwright) against `cwi serve --worker`,
the sandbox ERP and a local OpenID Connect provider."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ADMIN_KEY, ARTIFACTS, SANDBOX_TOKEN, Console
from tests.browser.helpers import (
    customer,
    dead_letters,
    log_in_with_key,
    log_in_with_oidc,
    outcomes,
    publish,
    query,
    wait_for,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def page(console: Console, browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    yield context.new_page()
    context.close()


def provision(page: Any, console: Console, client: str, token: str = SANDBOX_TOKEN) -> None:
    base = console.url
    page.goto(f"{base}/clients")
    page.fill("#client_id", client)
    page.fill("#name", f"{client.title()} AS")
    page.click("text=Add client")
    page.wait_for_url(f"{base}/clients/{client}")
    page.select_option("#kind", "generic_rest")
    page.fill("#base_url", console.sandbox)
    page.fill("#credential_new_name", "token")
    page.fill("#credential_new_value", token)
    page.click("#save-connection")
    page.wait_for_selector(".notice >> text=connection of")


def test_an_operators_day(console: Console, page: Any) -> None:
    base, db = console.url, console.db_url
    # Log in with the admin key.
    page.goto(f"{base}/")
    page.wait_for_url(f"{base}/login**")
    console.shot(page, "login")
    log_in_with_key(page, base, ADMIN_KEY)

    # Provision a client against the sandbox ERP; credentials are write-only.
    provision(page, console, "acme")
    assert "token: set" in page.inner_text("body") and SANDBOX_TOKEN not in page.content()
    # A bad setting is refused with the fix.
    page.fill("#setting_new_name", "timeout_s")
    page.fill("#setting_new_value", "soon")
    page.click("#save-connection")
    assert "is not a positive number" in page.inner_text("#problems")
    assert "cwi connections set acme generic_rest" in page.inner_text("#problems")

    # Test the connection: the provider's own answer.
    page.click("#test-connection")
    result = page.inner_text("#result")
    assert "OK" in result and "authenticated as" in result
    console.shot(page, "client")

    # Push events: two good ones, and one the ERP refuses (organisation number).
    publish(db, [customer("acme", 1), customer("acme", 2), customer("acme", 3, org_number="123456789")])
    wait_for("two customers created", lambda: len(outcomes(db, "acme", "created")) >= 2)
    wait_for("the refused one dead-lettered", lambda: dead_letters(db, "acme"))

    # The client is disabled by mistake: its next events dead-letter, one failure group.
    page.click("text=Disable client")
    page.wait_for_selector(".notice >> text=disabled")
    publish(db, [customer("acme", n) for n in (4, 5, 6)])
    wait_for("three more dead letters", lambda: len(dead_letters(db, "acme")) >= 4)
    page.goto(f"{base}/failures")
    groups = page.inner_text("#groups")
    assert "ConnectionDisabled" in groups and "ProviderRejected" in groups
    console.shot(page, "failures")
    page.click("#groups >> text=ConnectionDisabled")
    assert page.inner_text("h1").startswith("ConnectionDisabled")
    # A dry run says what would happen, and sends nothing.
    page.click("text=Dry run (group)")
    assert page.inner_text("#plan").count("replay") == 3
    assert len(dead_letters(db, "acme")) == 4
    console.shot(page, "failure-group")

    # Fix the cause (enable the client again), then retry the group.
    page.goto(f"{base}/clients/acme")
    page.click("text=Enable client")
    page.wait_for_selector(".notice >> text=enabled")
    page.goto(f"{base}/failures")
    page.click("#groups >> text=ConnectionDisabled")
    page.click("text=Retry group")
    page.wait_for_selector(".notice >> text=3 replayed")
    wait_for("the retried customers created", lambda: len(outcomes(db, "acme", "created")) >= 5)
    assert [reason for _, reason in dead_letters(db, "acme")] == ["ProviderRejected"]

    # Follow one record's timeline, found by its number.
    page.goto(f"{base}/records?client=acme&q=1004")
    page.click("#found >> text=acme-c4")
    timeline = page.inner_text("#timeline")
    for step in (
        "replayed by an operator",
        "ConnectionDisabled",
        "push started",
        "written to the ERP (created)",
    ):
        assert step in timeline, step
    assert "Customer 4" in timeline and "built-in" not in timeline  # the values written
    link = page.inner_text("#links")
    assert "generic_rest" in link and "GR-customer-" in link  # the ERP's id for it
    console.shot(page, "record")


def test_edit_and_retry_an_invalid_envelope(console: Console, page: Any) -> None:
    base, db = console.url, console.db_url
    log_in_with_key(page, base, ADMIN_KEY)
    provision(page, console, "globex")
    bad = customer(
        "globex",
        7,
        address={"street": "Storgata 1", "postal_code": "0155", "city": "Oslo", "country": "Norway"},
    )
    publish(db, [bad])
    letter = wait_for("the invalid envelope dead-lettered", lambda: dead_letters(db, "globex"))[0][0]
    page.goto(f"{base}/failures")
    page.click("#groups >> text=InvalidEnvelope")
    page.click(f"text={letter}")
    # Still invalid: validated before sending, nothing sent.
    page.fill("[name='data.address.country']", "Norge")
    page.click("text=Validate and send")
    assert "data.address.country" in page.inner_text("#problems")
    assert len(dead_letters(db, "globex")) == 1
    console.shot(page, "edit-and-retry")
    page.fill("[name='data.address.country']", "NO")
    page.click("text=Validate and send")
    page.wait_for_selector(".notice >> text=sent as new message")
    wait_for("the edited customer created", lambda: outcomes(db, "globex", "created"))
    assert dead_letters(db, "globex") == []
    # Journalled: who changed what, before and after.
    page.goto(f"{base}/audit?client=globex")
    audit = page.inner_text("#audit")
    assert "edited" in audit and '"before": "Norway"' in audit and '"after": "NO"' in audit
    console.shot(page, "audit")
    edited = query(db, "SELECT detail FROM sync_log WHERE action = 'edited' AND client_id = 'globex'")
    assert len(edited) == 1 and "data.address.country" in edited[0][0]


def test_a_viewer_signed_in_with_openid_connect_cannot_replay(
    console: Console, page: Any, browser: Any
) -> None:
    base, db = console.url, console.db_url
    admin = browser.new_context().new_page()
    log_in_with_key(admin, base, ADMIN_KEY)
    provision(admin, console, "initech")
    admin.click("text=Disable client")
    admin.context.close()
    publish(db, [customer("initech", 1)])
    wait_for("a dead letter", lambda: dead_letters(db, "initech"))

    log_in_with_oidc(page, base, "vera")
    assert "vera · viewer" in page.inner_text("header")
    assert console.oidc.pkce_checked >= 1 and console.oidc.refused == []
    page.goto(f"{base}/failures")
    console.shot(page, "overview-viewer")
    page.click("#groups >> text=ConnectionDisabled")
    page.check("input[name=ids]")
    page.click("text=Retry selected")
    assert "needs the operator role" in page.inner_text("#error")
    assert len(dead_letters(db, "initech")) == 1
    # A user without a console role is refused at the log-in.
    other = browser.new_context().new_page()
    log_in_with_oidc(other, base, "nina")
    assert "has no console role" in other.inner_text("#error")
    other.context.close()


def test_a_form_without_the_csrf_token_is_refused(console: Console, page: Any) -> None:
    base = console.url
    log_in_with_key(page, base, ADMIN_KEY)
    page.goto(f"{base}/clients")
    page.fill("#client_id", "forged")
    page.eval_on_selector("#add-client input[name=csrf_token]", "e => e.remove()")
    page.click("text=Add client")
    assert "CSRF" in page.inner_text("#error")
    assert query(console.db_url, "SELECT id FROM clients WHERE id = 'forged'") == []


def test_provider_administration_runs_the_conformance_checks(console: Console, page: Any) -> None:
    base = console.url
    log_in_with_key(page, base, ADMIN_KEY)
    page.goto(f"{base}/providers")
    page.fill("#name", "sandbox-erp")
    page.fill("#description", "The reference implementation")
    page.fill("#base_url_template", "http://{host}")
    page.click("text=Save provider")
    page.wait_for_url(f"{base}/providers/sandbox-erp")
    page.fill("#ph-host", console.sandbox.removeprefix("http://"))
    page.fill("#token", SANDBOX_TOKEN)
    page.click("text=Run the conformance checks")
    page.wait_for_selector(".notice >> text=conformance run of sandbox-erp finished", timeout=120_000)
    assert "passed" in page.inner_text("#report-summary") and "0 failed" in page.inner_text("#report-summary")
    console.shot(page, "provider")
    page.goto(f"{base}/providers")
    console.shot(page, "providers")
    provision(page, console, "umbrella")  # its own client: the tests share a console, in any order
    page.goto(f"{base}/")
    assert "umbrella" in page.inner_text("#overview")
    console.shot(page, "overview")


def test_screenshots_for_the_readme(console: Console) -> None:
    """The README shows two of the artefacts. A test run never rewrites tracked files: the copies in
    docs/ are refreshed only when asked (CWI_REFRESH_SCREENSHOTS=1)."""
    for name in ("failure-group", "record"):
        shot = ARTIFACTS / f"{name}.png"
        if shot.exists() and os.environ.get("CWI_REFRESH_SCREENSHOTS"):
            shutil.copyfile(shot, DOCS / f"console-{name}.png")
    assert (DOCS / "console-failure-group.png").exists() and (DOCS / "console-record.png").exists()
