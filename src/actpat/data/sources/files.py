"""File formats the sources read: JSONL, JSON, CSV, Parquet (local files) and Arrow streams."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .base import DataError, decode_utf8, jsonl_rows


def read_local_rows(path: str | Path) -> list[dict]:
    """Rows of a JSONL, JSON (array of objects), CSV or Parquet file, as dicts; strict UTF-8.

    Any file that cannot be parsed is a DataError naming the file (and the row where known)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file {path} does not exist")
    try:
        return _read_local_rows(path)
    except RecursionError:
        raise DataError(f"file:{path}: JSON nested too deeply to read") from None
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - a parser failing on a foreign file: csv field limits, pyarrow errors
        raise DataError(f"file:{path}: cannot be read as {path.suffix.lower().lstrip('.')} "
                        f"({type(e).__name__}: {e})") from e


def _read_local_rows(path: Path) -> list[dict]:
    suf = path.suffix.lower()
    if suf == ".jsonl":
        return [r for _, r, _ in jsonl_rows(path)]
    if suf == ".json":
        raw = path.read_bytes()
        text = decode_utf8(raw, f"file:{path}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg == "Extra data":  # JSON Lines saved as .json (the hub accepts both)
                return [r for _, r, _ in jsonl_rows(path, raw)]
            raise DataError(f"file:{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"file:{path}: expected a JSON array of objects (or {{\"data\": [...]}})")
        return data
    if suf == ".csv":
        raw = path.read_bytes()
        text = decode_utf8(raw, f"file:{path}")
        rows = []
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for i, r in enumerate(reader):
            if None in r:  # more cells than header columns: the row would be silently misread
                raise DataError(f"file:{path}#{i} (line {reader.line_num}): {len(reader.fieldnames or [])} "
                                f"columns in the header but more cells in this row")
            rows.append(r)
        return rows
    if suf == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        rows = table.to_pylist()
        for col in table.schema:
            if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
                for i, r in enumerate(rows):
                    v = r[col.name]
                    if v is None:
                        continue
                    try:
                        r[col.name] = v.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise DataError(f"file:{path}#{i}: column {col.name!r} is not valid UTF-8 "
                                        f"(byte 0x{v[e.start]:02x} at offset {e.start})") from None
        return rows
    raise DataError(f"file {path}: unsupported type {suf!r}; use .jsonl, .json, .csv or .parquet")


def arrow_rows(path: Path) -> list[dict]:
    """Rows of an Arrow IPC stream file (what ``datasets.Dataset.save_to_disk`` writes)."""
    import pyarrow as pa
    import pyarrow.ipc

    if not path.is_file():
        raise DataError(f"file {path} is missing")
    try:
        with pa.OSFile(str(path), "rb") as f:
            return pyarrow.ipc.open_stream(f).read_all().to_pylist()
    except pa.ArrowException as e:
        raise DataError(f"file:{path}: not a readable Arrow stream ({e})") from None
