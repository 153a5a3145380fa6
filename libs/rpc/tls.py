"""Optional mutual TLS for internal gRPC: certificate files from settings, credentials for both ends.

With a CA, a certificate and a key configured, servers accept only clients presenting a
certificate signed by that CA, and clients verify the server against the same CA while
presenting their own. Embedded mode keeps plaintext: every service runs in one process on
localhost, where TLS protects nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from libs.config import Settings


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one process: the CA that signs every peer, and this process's cert and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def _read(self) -> tuple[bytes, bytes, bytes]:
        return self.ca_file.read_bytes(), self.cert_file.read_bytes(), self.key_file.read_bytes()

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials of a server that requires and verifies client certificates."""
        ca, cert, key = self._read()
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials of a client that verifies the server and presents its own certificate."""
        ca, cert, key = self._read()
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def tls_from_settings(settings: Settings) -> TlsFiles | None:
    """The configured mutual TLS files, or None (plaintext) when unset or in embedded mode."""
    if settings.mode == "embedded":
        return None
    if not (settings.grpc_tls_ca_file and settings.grpc_tls_cert_file and settings.grpc_tls_key_file):
        return None
    return TlsFiles(
        ca_file=Path(settings.grpc_tls_ca_file),
        cert_file=Path(settings.grpc_tls_cert_file),
        key_file=Path(settings.grpc_tls_key_file),
    )
