"""Results stores: a local directory or an S3 bucket (prefix optional), with the same key layout.

Writes are atomic in both: S3 objects appear whole, local files are written aside and renamed,
so a reader (the report, a resume) never sees half a run-summary.json.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class LocalStore:
    def __init__(self, root: str):
        self.root = Path(root)

    def uri(self, key: str) -> str:
        return str(self.root / key)

    def _target(self, key: str) -> Path:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._target(key)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def put_file(self, key: str, source: str) -> None:
        path = self._target(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None


class S3Store:
    """boto3 reads AWS_ENDPOINT_URL itself, so S3-compatible servers (moto in tests) just work."""

    def __init__(self, bucket: str, prefix: str = ""):
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.client("s3")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, source: str) -> None:
        self.client.upload_file(source, self.bucket, self._key(key))

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None


def make_store(spec: str) -> LocalStore | S3Store:
    """`s3://bucket[/prefix]` or a local directory path."""
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[len("s3://") :].partition("/")
        return S3Store(bucket, prefix)
    return LocalStore(spec)


# The driver ships this package to the nodes by value, globals included: a task's cache must
# start empty (the driver uses make_store, never this), and be a plain dict, because an
# lru_cache wrapper would be pickled by reference to a package the nodes cannot import.
_open: dict[str, LocalStore | S3Store] = {}


def open_store(spec: str) -> LocalStore | S3Store:
    """A store for tasks: one client per worker process."""
    if spec not in _open:
        _open[spec] = make_store(spec)
    return _open[spec]
