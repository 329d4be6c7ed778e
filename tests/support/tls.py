"""A throwaway certificate authority and a server certificate for 127.0.0.1, made with the
``openssl`` command (as ``tests/integration/test_edge_tls_trace.py`` makes its self-signed one).

A real CA and a leaf signed by it, not one self-signed certificate: rustls (uv) refuses a CA
certificate presented as the server's own."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LocalCA", "make_test_ca"]

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class LocalCA:
    ca_cert: Path  # give this to clients (curl --cacert, pip --cert, SSL_CERT_FILE)
    cert: Path  # the server's certificate (--tls-cert)
    key: Path  # the server's key (--tls-key)

    def edge_args(self) -> list[str]:
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def make_test_ca(directory: Path) -> LocalCA:
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    _openssl(
        "req", "-x509", *_EC, "-days", "2", "-subj", "/CN=pkgedge test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(ca_key), "-out", str(ca_cert),
    )  # fmt: skip
    _openssl("req", "-new", *_EC, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1\n"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return LocalCA(ca_cert, cert, key)
