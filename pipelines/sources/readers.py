"""Rows from a local file (.jsonl, .json, .csv, .parquet, .txt), or a one-line error naming it.

Whatever a file holds (bytes that are not UTF-8, a truncated or corrupt archive, JSON nested too
deep, numbers with thousands of digits, a CSV pandas cannot tokenise), reading it ends in rows or
in a PlatformError whose message starts with the file's path. The known failures get their own
words; anything else a parser raises is caught at the end of `read_local` and named with the
parser's first line, so no user file can end a run in a traceback. A UTF-8 byte-order mark is
skipped (Windows editors write one); other encodings fail, saying the file is not UTF-8.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipelines.errors import PlatformError, first_line

LOCAL_FORMATS = (".jsonl", ".json", ".csv", ".parquet", ".txt")
PLAIN_TEXT_FIELD = "text"  # the one field of the one row a plain-text file reads as


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlatformError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def _json(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlatformError(f"{where}: not valid JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:
        raise PlatformError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer past Python's 4,300-digit conversion limit
        raise PlatformError(f"{where}: unreadable JSON value ({first_line(exc)})") from None


def _jsonl(path: Path) -> list:
    rows = []
    # Lines end at "\n" only: str.splitlines would also cut at U+2028 and others, which JSON strings may hold.
    for number, line in enumerate(_text(path).split("\n"), start=1):
        if line.strip():
            rows.append(_json(line, f"{path} row {number}"))
    return rows


def _json_list(path: Path) -> list:
    data = _json(_text(path), str(path))
    if not isinstance(data, list):
        raise PlatformError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
    return data


def _csv(path: Path) -> list[dict]:
    import pandas as pd

    _text(path)  # fails first, naming the byte, if the file is not UTF-8
    try:
        frame = pd.read_csv(path, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        return []
    except (pd.errors.ParserError, ValueError) as exc:
        raise PlatformError(f"{path}: not a readable CSV file ({first_line(exc)})") from None
    return _records(frame, path)


def _parquet(path: Path) -> list[dict]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise PlatformError(f"{path}: not a readable Parquet file ({first_line(exc)})") from None
    return _records(frame, path)


def _records(frame, path: Path) -> list[dict]:
    if frame.columns.duplicated().any():
        raise PlatformError(f"{path}: duplicate column names {sorted(set(frame.columns[frame.columns.duplicated()]))}")
    # Column names become field names: a CSV header of numbers must still name fields as strings.
    frame.columns = [str(c) for c in frame.columns]
    return frame.to_dict(orient="records")


def _plain_text(path: Path) -> list[dict]:
    text = _text(path)  # one document: language modelling packs it into blocks
    return [{PLAIN_TEXT_FIELD: text}] if text.strip() else []


READERS = {".jsonl": _jsonl, ".json": _json_list, ".csv": _csv, ".parquet": _parquet, ".txt": _plain_text}


def read_local(path: Path) -> list:
    """The rows of `path` (its suffix picks the reader), unvalidated: `datasets.validate_rows`
    checks each one and names its row number."""
    reader = READERS[path.suffix.lower()]
    try:
        return reader(path)
    except PlatformError:
        raise
    except MemoryError:
        raise PlatformError(f"{path}: too large to read into memory") from None
    except Exception as exc:  # noqa: BLE001 - a parser's own failure on a file no check above foresaw
        raise PlatformError(f"{path}: cannot be read as {path.suffix.lower()} ({type(exc).__name__}: "
                            f"{first_line(exc)})") from None
