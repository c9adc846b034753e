"""How Parley's Kafka clients authenticate: TLS (CA, client certificate) and SASL.

Production Redpanda (its Helm chart) turns TLS on by default, and managed Kafka
services require SASL. One :class:`KafkaSecurity`, built from the settings, gives
every client the same arguments: the gateway's producer, the Faust worker, the
topic tools and the dead-letter replay.
"""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any

from parley.settings import Secret, Settings, SettingsError

PLAINTEXT = "PLAINTEXT"
SSL = "SSL"
SASL_PLAINTEXT = "SASL_PLAINTEXT"
SASL_SSL = "SASL_SSL"
PROTOCOLS = (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclasses.dataclass(frozen=True, kw_only=True)
class KafkaSecurity:
    """The security half of a Kafka client's configuration."""

    protocol: str = PLAINTEXT
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        security = cls(
            protocol=settings.kafka_security_protocol,
            ca_file=settings.kafka_ca_file,
            cert_file=settings.kafka_cert_file,
            key_file=settings.kafka_key_file,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=settings.kafka_sasl_password,
        )
        security.validate()
        return security

    @property
    def uses_tls(self) -> bool:
        return self.protocol in (SSL, SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in (SASL_PLAINTEXT, SASL_SSL)

    def validate(self) -> None:
        """One sentence for a combination no broker would accept."""
        if self.protocol not in PROTOCOLS:
            raise SettingsError(
                f"PARLEY_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)},"
                f" got {self.protocol!r}"
            )
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise SettingsError(
                    f"PARLEY_KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}"
                    f" with {self.protocol}, got {self.sasl_mechanism!r}"
                )
            if not self.sasl_username or self.sasl_password is None:
                raise SettingsError(
                    f"{self.protocol} needs PARLEY_KAFKA_SASL_USERNAME and"
                    " PARLEY_KAFKA_SASL_PASSWORD"
                )
        elif self.sasl_mechanism or self.sasl_username:
            raise SettingsError(
                "PARLEY_KAFKA_SASL_* is set but PARLEY_KAFKA_SECURITY_PROTOCOL is"
                f" {self.protocol}: use SASL_SSL or SASL_PLAINTEXT"
            )
        if not self.uses_tls and (self.ca_file or self.cert_file):
            raise SettingsError(
                "PARLEY_KAFKA_CA_FILE / PARLEY_KAFKA_CERT_FILE need"
                " PARLEY_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"
            )
        if bool(self.cert_file) != bool(self.key_file):
            raise SettingsError("PARLEY_KAFKA_CERT_FILE and PARLEY_KAFKA_KEY_FILE go together")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Verifies the broker (system CAs, or the given CA); presents a client cert if set."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        if self.uses_sasl:
            assert self.sasl_password is not None
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.reveal(),
            )
        return kwargs

    def faust_credentials(self) -> Any:
        """The Faust ``broker_credentials`` for the same configuration (None: plaintext)."""
        import faust

        context = self.ssl_context()
        if self.uses_sasl:
            assert self.sasl_password is not None
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.reveal(),
                ssl_context=context,
                mechanism=self.sasl_mechanism,
            )
        if context is not None:
            return faust.SSLCredentials(context)
        return None
