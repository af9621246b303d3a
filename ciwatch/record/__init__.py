"""The provenance record: typed events, an append-only writer and a reader."""

from ciwatch.record.reader import Record, RecordedEvent, read_record
from ciwatch.record.writer import RECORD_FILE, RecordWriter

SCHEMA_VERSION = 1

__all__ = ["RECORD_FILE", "SCHEMA_VERSION", "Record", "RecordWriter", "RecordedEvent", "read_record"]
