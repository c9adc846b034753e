"""Kafka TLS and SASL settings become the same client arguments everywhere.

No local broker here can do TLS or SASL: the embedded Tansu 0.6.0 refuses
``--cert`` together with ``--key``, and with ``--authentication`` it needs SCRAM
users that cannot be created while authentication is on (memory storage). So
these tests check the plumbing: the arguments aiokafka and Faust receive, and
that the TLS context really loads the CA and the client certificate.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from parley.settings import Secret, Settings, SettingsError
from streams.producer import KafkaEventProducer
from streams.security import KafkaSecurity

TEST_SECRET = "s" * 48  # PARLEY_SECRET must be at least 32 bytes


def make_certificates(folder: Path) -> dict[str, str]:
    """A CA and a client certificate it signed, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=parley-test-ca",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=parley-client",
    )
    run(
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "client.pem",
        "-days",
        "1",
    )
    return {name: str(folder / f"{name}") for name in ("ca.pem", "client.pem", "client.key")}


def test_defaults_are_plaintext() -> None:
    security = KafkaSecurity.from_settings(Settings())
    assert security.aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert security.faust_credentials() is None


def test_settings_read_the_environment() -> None:
    settings = Settings.from_env(
        {
            "PARLEY_SECRET": TEST_SECRET,
            "PARLEY_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "PARLEY_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "PARLEY_KAFKA_SASL_USERNAME": "parley",
            "PARLEY_KAFKA_SASL_PASSWORD": "hunter2",
            "PARLEY_KAFKA_CA_FILE": "/etc/redpanda/ca.crt",
        }
    )
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_password == Secret("hunter2")
    assert "hunter2" not in repr(settings)
    assert settings.kafka_ca_file == "/etc/redpanda/ca.crt"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_over_tls_gives_aiokafka_and_faust_the_same_arguments(
    tmp_path: Path, mechanism: str
) -> None:
    files = make_certificates(tmp_path)
    security = KafkaSecurity(
        protocol="SASL_SSL",
        ca_file=files["ca.pem"],
        sasl_mechanism=mechanism,
        sasl_username="parley",
        sasl_password=Secret("hunter2"),
    )
    ours = security.aiokafka_kwargs()
    assert ours["security_protocol"] == "SASL_SSL"
    assert ours["sasl_mechanism"] == mechanism
    assert ours["sasl_plain_username"] == "parley"
    assert ours["sasl_plain_password"] == "hunter2"
    context = ours["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(
        cert["subject"] == ((("commonName", "parley-test-ca"),),) for cert in context.get_ca_certs()
    )
    faust_side = credentials_to_aiokafka_auth(security.faust_credentials())
    assert {k: v for k, v in faust_side.items() if k != "ssl_context"} == {
        k: v for k, v in ours.items() if k != "ssl_context"
    }
    assert isinstance(faust_side["ssl_context"], ssl.SSLContext)


def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    security = KafkaSecurity(
        protocol="SSL",
        ca_file=files["ca.pem"],
        cert_file=files["client.pem"],
        key_file=files["client.key"],
    )
    kwargs = security.aiokafka_kwargs()
    assert kwargs["security_protocol"] == "SSL" and "sasl_mechanism" not in kwargs
    faust_side = credentials_to_aiokafka_auth(security.faust_credentials())
    assert faust_side["security_protocol"] == "SSL"
    with pytest.raises(ssl.SSLError):  # the key must match the certificate
        KafkaSecurity(
            protocol="SSL", cert_file=files["client.pem"], key_file=files["ca.pem"]
        ).ssl_context()


async def test_the_producer_receives_the_arguments() -> None:
    security = KafkaSecurity(
        protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="parley",
        sasl_password=Secret("hunter2"),
    )
    producer = KafkaEventProducer(
        bootstrap_servers="127.0.0.1:1", visitor_topic="v", agent_topic="a", security=security
    )
    client = producer._producer.client
    assert client._security_protocol == "SASL_PLAINTEXT"
    assert client._sasl_mechanism == "SCRAM-SHA-256"
    assert client._sasl_plain_username == "parley"
    assert client._sasl_plain_password == "hunter2"
    await producer.stop()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PARLEY_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of"),
        ({"PARLEY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "PARLEY_KAFKA_SASL_MECHANISM"),
        (
            {"PARLEY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PARLEY_KAFKA_SASL_MECHANISM": "PLAIN"},
            "needs PARLEY_KAFKA_SASL_USERNAME",
        ),
        ({"PARLEY_KAFKA_SASL_USERNAME": "x"}, "use SASL_SSL or SASL_PLAINTEXT"),
        ({"PARLEY_KAFKA_CA_FILE": "/ca.pem"}, "need"),
        (
            {"PARLEY_KAFKA_SECURITY_PROTOCOL": "SSL", "PARLEY_KAFKA_CERT_FILE": "/c.pem"},
            "go together",
        ),
    ],
)
def test_bad_combinations_are_one_sentence(env: dict[str, str], message: str) -> None:
    settings = Settings.from_env({"PARLEY_SECRET": TEST_SECRET, **env})
    with pytest.raises(SettingsError, match=message):
        KafkaSecurity.from_settings(settings)
