"""UniEconomyProvider against the Uni fake: rate limits and errors, the company key, and the
private_key_jwt credentials (PEM, PKCS#12, a key the login host does not know)."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from providers.errors import AuthenticationFailed, MappingError, ProviderRejected, TransientError
from providers.uni_economy import UniEconomyProvider
from tests.fakes.uni_economy import FakeUni
from tests.fakes.uni_keys import pem
from tests.integration.provider_contract import change, http
from tests.integration.uni_economy_rig import (
    CLIENT_ID,
    CUSTOMER,
    SUPPLIER,
    MakeProvider,
    cert,
    fake,
    key,
    make,
    provider,
)

__all__ = ["cert", "fake", "http", "key", "make", "provider"]  # the fixtures


async def test_429_retry_after_beyond_the_wait_is_handed_to_the_retry(
    provider: UniEconomyProvider, fake: FakeUni
) -> None:
    fake.fail_next(1, 429, retry_after="7")
    with pytest.raises(TransientError) as caught:
        await provider.push(change(CUSTOMER))
    assert caught.value.retry_after == 7
    sent = len(fake.requests)
    with pytest.raises(TransientError, match="rate limit used up"):
        await provider.push(change(CUSTOMER))
    assert len(fake.requests) == sent


async def test_503_is_transient(provider: UniEconomyProvider, fake: FakeUni) -> None:
    fake.fail_next(1, 503, message="Service Unavailable")
    with pytest.raises(TransientError, match="Service Unavailable"):
        await provider.push(change(CUSTOMER))


async def test_revoked_credentials_fail_authentication(provider: UniEconomyProvider, fake: FakeUni) -> None:
    await provider.push(change(CUSTOMER))
    fake.revoke(CLIENT_ID)
    with pytest.raises(AuthenticationFailed, match="cwi connections set acme uni_economy") as caught:
        await provider.push(change(SUPPLIER))
    assert "client_id" in str(caught.value)


async def test_vendor_validation_error_carries_its_message(
    provider: UniEconomyProvider, fake: FakeUni
) -> None:
    fake.fail_next(1, 400, message="Kundenummer 1001 er allerede i bruk")
    with pytest.raises(ProviderRejected, match="Kundenummer 1001 er allerede i bruk"):
        await provider.push(change(CUSTOMER))


async def test_missing_company_key_names_the_setting(make: MakeProvider) -> None:
    with pytest.raises(MappingError, match="setting company_key"):
        await make({"company_key": ""}).push(change(CUSTOMER))


async def test_wrong_company_key_names_the_setting(make: MakeProvider) -> None:
    with pytest.raises(AuthenticationFailed, match=r"Unknown CompanyKey.*check setting company_key"):
        await make({"company_key": "someone-elses-company"}).push(change(CUSTOMER))


@pytest.mark.parametrize(
    ("credentials", "named"),
    [
        ({"client_id": ""}, "client_id"),
        (
            {"private_key_pem": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"},
            "private_key_pem",
        ),
        ({"private_key_pem": "", "pkcs12": "not base64!"}, "pkcs12"),
        ({"private_key_pem": ""}, "private_key_pem"),
    ],
    ids=["no-client-id", "bad-pem", "bad-pkcs12", "no-key"],
)
async def test_bad_credentials_name_the_credential(
    make: MakeProvider, credentials: dict[str, str], named: str
) -> None:
    with pytest.raises(AuthenticationFailed, match=named):
        await make(credentials=credentials).push(change(CUSTOMER))


async def test_pkcs12_credentials_sign_with_certificate_thumbprint(
    make: MakeProvider, fake: FakeUni, key: rsa.RSAPrivateKey, cert: x509.Certificate
) -> None:
    bundle = pkcs12.serialize_key_and_certificates(
        b"cw", key, cert, None, serialization.BestAvailableEncryption(b"s3cret")
    )
    creds = {"private_key_pem": "", "pkcs12": base64.b64encode(bundle).decode(), "pkcs12_password": "s3cret"}
    assert (await make(credentials=creds).push(change(CUSTOMER))).outcome == "created"
    assert fake.assertion_headers[-1]["kid"] == cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    with pytest.raises(AuthenticationFailed, match="pkcs12_password"):
        await make(credentials={**creds, "pkcs12_password": "wrong"}).push(change(CUSTOMER))


async def test_assertion_signed_by_another_key_is_refused(make: MakeProvider) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthenticationFailed, match="refused client_id cw-integration"):
        await make(credentials={"private_key_pem": pem(stranger), "certificate_pem": ""}).push(
            change(CUSTOMER)
        )
