"""A real S3-protocol server for tests: moto's server mode on 127.0.0.1 (an OS-chosen port).

``s3_server`` is a session-scoped fixture (import it into a test module to use it) yielding an
:class:`S3Server` whose bucket already exists. Tests share the bucket, so each test should use
its own key prefix (``S3Server.storage(prefix=...)`` makes that easy).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

ACCESS_KEY = "pkgedge-test-access"
SECRET_KEY = "pkgedge-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>
    bucket: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    def client(self) -> Any:
        """A plain boto3 client talking to this server (to check things behind storage's back)."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def storage(self, prefix: str | None = None) -> Any:
        """An ``S3Storage`` on this server under *prefix* (a fresh unique one by default)."""
        from pkgedge.index.storage import S3Storage

        return S3Storage(
            self.endpoint,
            self.bucket,
            self.access_key,
            self.secret_key,
            region=self.region,
            prefix=f"t-{uuid.uuid4().hex}" if prefix is None else prefix,
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = S3Server(endpoint=f"http://{host}:{port}", bucket="pkgedge-test-blobs")
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        _stop(server)


def _stop(server: Any) -> None:
    """Stop the moto server even if its accept loop is blocked on a connection that went
    away before it was accepted: poke it with fresh connections until shutdown completes."""
    host, port = server.get_host_and_port()
    stopper = threading.Thread(target=server.stop, daemon=True)
    stopper.start()
    for _ in range(40):
        stopper.join(0.25)
        if not stopper.is_alive():
            return
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=1).close()
