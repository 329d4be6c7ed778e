"""A real S3-protocol server for tests: moto's server (``moto_server``) in its own process on
127.0.0.1 (an OS-chosen port).

``s3_server`` is a session-scoped fixture (import it into a test module to use it) yielding an
:class:`S3Server` whose bucket already exists. Tests share the bucket, so each test should use
its own key prefix (``S3Server.storage(prefix=...)`` makes that easy).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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
        from pkgedge.index.s3storage import S3Storage

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
    """moto's server in a process of its own (``moto_server``, an OS-chosen port): nothing
    the test process does to its own file descriptors or threads can stop it."""
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        endpoint = _endpoint(proc)
        s3 = S3Server(endpoint=endpoint, bucket="pkgedge-test-blobs")
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _drain(out: Any) -> None:
    try:
        while out.read(65536):
            pass
    except (OSError, ValueError):
        pass  # closed at teardown


def _endpoint(proc: subprocess.Popen[str]) -> str:
    """The address moto_server prints (`` * Running on http://127.0.0.1:PORT``)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if match := re.search(r"Running on (http://127\.0\.0\.1:\d+)", line):
            # keep draining its output so that a full pipe never blocks it
            threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
            return match.group(1)
    raise RuntimeError(f"moto_server did not start: {''.join(seen)}")
