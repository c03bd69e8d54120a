"""What a client of the Uni Economy fake holds: an RSA key, its self-signed certificate, and the
connection's settings and credentials built from them (the served fakes and the provider tests)."""

from __future__ import annotations

import datetime as dt
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.fakes.uni_economy import FakeUni


@cache
def uni_key(name: str) -> rsa.RSAPrivateKey:
    """One key per ``name`` for the whole session: generating an RSA key takes a noticeable moment."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def certificate(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    builder = builder.serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
    return builder.sign(key, hashes.SHA256())


def uni_connection(
    uni: FakeUni, client_id: str, key: rsa.RSAPrivateKey, cert: x509.Certificate
) -> tuple[dict[str, str], dict[str, str]]:
    """The settings and the credentials of a connection to ``uni`` as the registered ``client_id``."""
    settings = {
        "company_key": uni.company_key,
        "token_url": uni.token_url,
        "vat_code.25": "3",
        "vat_code.0": "6",
        "revenue_account": "3000",
    }
    credentials = {
        "client_id": client_id,
        "private_key_pem": pem(key),
        "certificate_pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }
    return settings, credentials
