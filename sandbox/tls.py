"""The public endpoint's TLS as users see it: a private CA and a server certificate, served on loopback.

The weekly certificate check probes this server exactly as it probes the real load balancer (chain,
host name, expiry); the sandbox trusts its CA through the endpoint's ``ca_bundle`` in the config.
The same certificate is imported into ACM, so both halves of the check look at one certificate.
"""

from __future__ import annotations

import socketserver
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PUBLIC_NAME = "www.solemate.example"


@dataclass(frozen=True)
class Issued:
    certificate_pem: bytes
    private_key_pem: bytes
    chain_pem: bytes
    not_after: datetime


class PrivateCa:
    """A CA whose certificate the sandbox's config trusts; issues server certificates on demand."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SoleMate Sandbox CA")])
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=3650)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(self.key, hashes.SHA256()))
        self.bundle_path = workdir / "sandbox-ca.pem" if workdir else None
        if self.bundle_path:
            self.bundle_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, host: str, not_after: datetime) -> Issued:
        """A server certificate for `host`, valid from a year before `not_after` (or a day ago) to it."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        not_before = min(now - timedelta(days=1), not_after - timedelta(days=365))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        return Issued(
            certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
            private_key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()),
            chain_pem=self.certificate.public_bytes(serialization.Encoding.PEM),
            not_after=not_after)


class _Handshake(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: TlsEndpoint = self.server.owner  # type: ignore[attr-defined]
        try:
            with server.context.wrap_socket(self.request, server_side=True) as tls:
                tls.recv(1)  # the client closes after the handshake
        except (ssl.SSLError, OSError):
            pass  # a client that refused our certificate: that is what the check reports


class _ThreadingTcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class TlsEndpoint:
    """Serves the current certificate on a loopback port; `serve()` swaps it for new connections."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.served: Issued | None = None

    def serve(self, issued: Issued) -> None:
        cert = self.workdir / "tls-server.pem"
        key = self.workdir / "tls-server.key"
        cert.write_bytes(issued.certificate_pem + issued.chain_pem)
        key.write_bytes(issued.private_key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.context, self.served = context, issued

    def start(self) -> TlsEndpoint:
        self.tcp = _ThreadingTcp(("127.0.0.1", 0), _Handshake)
        self.tcp.owner = self  # type: ignore[attr-defined]
        self.port = self.tcp.server_address[1]
        self.thread = threading.Thread(target=self.tcp.serve_forever, name="TlsEndpoint", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.tcp.shutdown()
        self.tcp.server_close()
        self.thread.join(timeout=5)
