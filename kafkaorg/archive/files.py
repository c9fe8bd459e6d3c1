"""Archive segments as Parquet files: where one goes, how it is written, read and checked.

A segment holds one partition's records ``[start, end)`` exactly as Kafka had them
(key, value, headers and timestamp as bytes, so a restore is byte-identical), plus
the envelope's ``id`` and ``type`` as columns for people querying the archive with
their own tools (DuckDB, Spark). Paths are ``<org>/<topic>/date=<UTC day>/
p<partition>-<start offset>.parquet``: a file is named by where it starts, so a run
that crashed after writing one and before recording it rewrites the same file.

No I/O beyond the filesystem; ``pyarrow.fs`` makes ``file://``, ``s3://`` and ``gs://``
the same code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import date
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
import pydantic_core
from pyarrow import fs

from kafkaorg.errors import ConfigError
from kafkaorg.log_ranges import RawRecord

SCHEMA = pa.schema(
    [
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("timestamp_ms", pa.int64()),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field(
            "headers",
            pa.list_(
                pa.struct(
                    [pa.field("key", pa.string(), nullable=False), pa.field("value", pa.binary())]
                )
            ),
        ),
        pa.field("id", pa.string()),
        pa.field("type", pa.string()),
        pa.field("payload_sha256", pa.string()),
    ],
    metadata={"kafkaorg.archive": "1"},
)
"""Version 1 of the segment layout (in the file's metadata). ``payload_sha256``: the
record's payload is stored by reference, and the archive keeps a copy of it
(``payload_path``), so the record outlives the blob's collection from PostgreSQL."""

_ENVELOPE_COLUMNS = ("id", "type", "payload_sha256")


class ArchiveStorage:
    """The archive's root on some filesystem, opened once from its URL."""

    def __init__(self, url: str) -> None:
        try:
            self.fs, self.root = fs.FileSystem.from_uri(url)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise ConfigError(f"KAFKAORG_ARCHIVE_URL={url!r}: {exc}") from None
        self.url = url

    def full_path(self, relative: str) -> str:
        return f"{self.root.rstrip('/')}/{relative}"

    def write(self, relative: str, data: bytes) -> None:
        """Write a whole file; on a local disk through a temporary name and a rename, so a
        crash never leaves half a file under the real name."""
        path = self.full_path(relative)
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if isinstance(self.fs, fs.LocalFileSystem):
            partial = f"{path}.partial"
            with self.fs.open_output_stream(partial) as out:
                out.write(data)
            self.fs.move(partial, path)
        else:  # object stores: a put is all-or-nothing already
            with self.fs.open_output_stream(path) as out:
                out.write(data)

    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self.full_path(relative)).type != fs.FileType.NotFound

    def read(self, relative: str) -> bytes:
        with self.fs.open_input_file(self.full_path(relative)) as src:
            data: bytes = src.read()
        return data


def segment_path(org: str, topic: str, partition: int, start: int, day: date | None) -> str:
    where = day.isoformat() if day is not None else "unknown"
    return f"{org}/{topic}/date={where}/p{partition}-{start:020d}.parquet"


def payload_path(org: str, sha256: str) -> str:
    """Where the archive keeps a payload stored by reference (content-addressed)."""
    return f"{org}/payloads/{sha256[:2]}/{sha256}.json"


_NO_FIELDS: tuple[str | None, str | None, str | None] = (None, None, None)


def _envelope_fields(value: bytes | None) -> tuple[str | None, str | None, str | None]:
    """The record's ``id``, ``type`` and stored payload's hash, when it is an envelope."""
    if not value or value[:1] != b"{":
        return _NO_FIELDS
    try:
        doc = pydantic_core.from_json(value)  # a third of json.loads' time (bench_archive)
    except ValueError:
        return _NO_FIELDS
    if not isinstance(doc, dict):
        return _NO_FIELDS
    rid, rtype, ref = doc.get("id"), doc.get("type"), doc.get("payload_ref")
    sha = ref.get("sha256") if isinstance(ref, dict) else None
    return (
        rid if isinstance(rid, str) else None,
        rtype if isinstance(rtype, str) else None,
        sha if isinstance(sha, str) else None,
    )


class Encoded(NamedTuple):
    data: bytes
    types: frozenset[str | None]
    """The records' envelope types (None: not an envelope)."""
    payloads: frozenset[str]
    """Hashes of the payloads the records carry by reference."""


def encode_segment(records: Sequence[RawRecord]) -> Encoded:
    """The Parquet file of these records (zstd-compressed)."""
    ids, types, shas = zip(*(_envelope_fields(r.value) for r in records), strict=True)
    table = pa.Table.from_pydict(
        {
            "partition": [r.partition for r in records],
            "offset": [r.offset for r in records],
            "timestamp_ms": [r.timestamp_ms for r in records],
            "key": [r.key for r in records],
            "value": [r.value for r in records],
            "headers": [[{"key": k, "value": v} for k, v in r.headers] for r in records],
            "id": list(ids),
            "type": list(types),
            "payload_sha256": list(shas),
        },
        schema=SCHEMA,
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return Encoded(
        bytes(sink.getvalue().to_pybytes()),
        frozenset(types),
        frozenset(s for s in shas if s is not None),
    )


def payload_hashes(data: bytes) -> set[str]:
    """The stored payloads a segment file's records refer to."""
    column = pq.read_table(pa.BufferReader(data), columns=["payload_sha256"]).column(0)
    return {s for s in column.to_pylist() if s is not None}


def decode_segment(data: bytes) -> Iterator[RawRecord]:
    """The records of a segment file, in offset order; raises on a damaged file."""
    table = pq.read_table(pa.BufferReader(data))
    columns = {
        name: table.column(name).to_pylist()
        for name in SCHEMA.names
        if name not in _ENVELOPE_COLUMNS
    }
    for i in range(table.num_rows):
        yield RawRecord(
            partition=columns["partition"][i],
            offset=columns["offset"][i],
            timestamp_ms=columns["timestamp_ms"][i],
            key=columns["key"][i],
            value=columns["value"][i],
            headers=[(h["key"], h["value"]) for h in columns["headers"][i] or []],
        )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
