"""Results stores: a local directory or an S3 bucket (prefix optional), with the same key layout.

Writes are atomic in both: S3 objects appear whole, local files are written aside and renamed,
so a reader (the report, a resume) never sees half a run-summary.json.

A write returns the version it made: S3's VersionId in a bucket with versioning on, else None (a
local directory; a bucket without versioning, whose objects have the version "null"). Histories
and videos keep MCS's names, so a later run replaces them: the summary records each output's
version, and a report links the very object its run wrote.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager, suppress
from pathlib import Path

CONTENT_TYPES = {".json": "application/json", ".mp4": "video/mp4",
                 ".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8"}


def content_type(key: str) -> str:
    return CONTENT_TYPES.get(Path(key).suffix, "application/octet-stream")


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
        with self._aside(key) as f:
            f.write(data)

    def put_file(self, key: str, source: str) -> None:
        with self._aside(key) as f, open(source, "rb") as src:
            shutil.copyfileobj(src, f)

    @contextmanager
    def _aside(self, key: str):
        """Write a fresh hidden file beside the key, then rename it over the key. The name is
        random and created with O_EXCL, so two writers never share one (not two runs, nor nodes
        whose process ids coincide); a failed write leaves no temporary file behind."""
        path = self._target(key)
        while True:
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            os.replace(tmp, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

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

    # A content type from the key's extension, so a browser plays a video or shows a log that a
    # report links to (without one, S3 serves binary/octet-stream, a download).
    def put_bytes(self, key: str, data: bytes) -> str | None:
        return self._put(key, data)

    def put_file(self, key: str, source: str) -> str | None:
        """One PutObject, not upload_file: its response carries the VersionId of exactly this
        write (upload_file returns nothing, and a HEAD after it could see another writer's
        version). A single PUT takes up to 5 GB, far above a scene's video or log."""
        with open(source, "rb") as body:
            return self._put(key, body)

    def _put(self, key: str, body) -> str | None:
        response = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body,
                                          ContentType=content_type(key))
        return version_of(response)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None


def version_of(response: dict) -> str | None:
    """The VersionId of a PUT's response; None without versioning ("null" once suspended)."""
    version = response.get("VersionId")
    return version if version and version != "null" else None


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
