"""Load dataset rows from a local file or `datasets.load_dataset`, validate them, split them.

Rows are validated field by field with the row number in the error, so a bad file fails
before any model is loaded.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from pipelines.errors import PlatformError, first_line
from pipelines.sources.leakage import without_leaking
from pipelines.sources.readers import LOCAL_FORMATS, read_local


@dataclass(frozen=True)
class Example:
    """One validated row: the input text and one or more references."""

    text: str
    references: tuple[str, ...]
    row: int  # 1-based row number in the source, for error messages and prediction tables


def data_fingerprint(examples) -> str:
    """A stable hash of the examples' content (text and references, in order; not row numbers): the
    key of a resumed grid's cells and the digest of the data a run logs, so equal means same rows."""
    digest = hashlib.sha1()
    for ex in examples:
        digest.update(json.dumps([ex.text, list(ex.references)]).encode())
    return digest.hexdigest()[:16]


def hub_parts(source: str) -> tuple[str, str, str | None]:
    """(dataset, split, revision) of `hf:<name>[:<split>][@<revision>]`; the split defaults to train."""
    body, _, revision = source.removeprefix("hf:").partition("@")
    dataset_name, _, split = body.partition(":")
    return dataset_name, split or "train", revision or None


def _read_hub(name: str, columns: dict[str, str] | None = None) -> list[dict]:
    """`hf:<name>[:<split>][@<revision>]`, e.g. `hf:knkarthick/dialogsum:validation` (needs the hub)."""
    dataset_name, split, revision = hub_parts(name)
    import datasets

    renames = columns or {}
    try:
        rows = datasets.load_dataset(dataset_name, split=split, revision=revision)
        # Inside the try: rows are decoded as they are read, and a broken cached file fails here.
        return [{renames.get(k, k): v for k, v in row.items()} for row in rows]
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; all mean "cannot have it"
        raise PlatformError(f"cannot load dataset '{name}': {first_line(exc)}") from None


def read_rows(source: str) -> list[dict]:
    if source.startswith("hf:"):
        return _read_hub(source)
    if source.startswith("package:"):
        from pipelines.sources.packaged_data import read_packaged

        return read_packaged(source)
    path = Path(source).expanduser()
    if path.suffix.lower() not in LOCAL_FORMATS:
        raise PlatformError(f"dataset '{source}': use a {'/'.join(LOCAL_FORMATS)} file or `hf:<name>[:<split>]`")
    if not path.is_file():
        raise PlatformError(f"dataset file not found: {source}")
    rows = read_local(path)
    if not rows:
        raise PlatformError(f"dataset file {source} " + ("is empty" if path.suffix.lower() == ".txt" else "has no rows"))
    return rows


def locate(ref) -> str:
    """The source a data reference reads: a string as written; a `DataFile` mapping its `local`
    copy when that file exists, else its pinned hub dataset as `hf:<name>:<split>[@<revision>]`."""
    if isinstance(ref, str):
        return ref
    if ref.local and Path(ref.local).expanduser().is_file():
        return ref.local
    if not ref.hf:
        raise PlatformError(f"dataset file not found: {ref.local}")
    return f"hf:{ref.hf}:{ref.split}" + (f"@{ref.revision}" if ref.revision else "")


def read_ref(ref, what: str = "") -> tuple[list[dict], str]:
    """(rows, the source they came from) for a string or a `DataFile`. `what` names the spec entry
    (e.g. "dataset 'sst2' train") in the error of a hub set that cannot be had here."""
    source = locate(ref)
    if isinstance(ref, str) or not source.startswith("hf:"):
        return read_rows(source), source
    try:
        return _read_hub(source, ref.columns), source
    except PlatformError as exc:
        copy = f"no local copy at '{ref.local}' either" if ref.local else "and it names no local copy"
        raise PlatformError(f"{what + ': ' if what else ''}{exc}; {copy} (set `local:` under it to the path "
                            "of a downloaded copy)") from None


def _references(value, source: str, number: int, field: str) -> tuple[str, ...]:
    refs = value if isinstance(value, list) else [value]
    if not refs:
        raise PlatformError(f"{source} row {number}: field '{field}' is an empty list")
    for ref in refs:
        if not isinstance(ref, str):
            raise PlatformError(f"{source} row {number}: field '{field}' must be a string, got {type(ref).__name__}")
        if not ref.strip():
            raise PlatformError(f"{source} row {number}: field '{field}' is empty")
    return tuple(refs)


def _label(value, source: str, number: int, field: str) -> tuple[str]:
    # 1 and "1" (and True) name the same class: a label is compared as a string.
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, (str, int)):
        raise PlatformError(f"{source} row {number}: label field '{field}' must be a string or an integer, "
                            f"got {type(value).__name__}")
    if not str(value).strip():
        raise PlatformError(f"{source} row {number}: label field '{field}' is empty")
    return (str(value).strip(),)


def require_fields(rows: list[dict], fields: list[str], source: str) -> None:
    """The task-independent part of validation: every row is an object holding `fields`."""
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise PlatformError(f"{source} row {number}: expected an object, got {type(row).__name__}")
        for field in fields:
            if row.get(field) is None:
                raise PlatformError(f"{source} row {number}: field '{field}' is missing")


def validate_rows(rows: list[dict], text_field: str, target_field: str, source: str, *, labels: bool = False,
                  where: dict[str, str] | None = None, drop_empty: bool = False) -> list[Example]:
    """Rows as Examples. With `labels`, the target is one class label (int or string, kept as a
    string) instead of reference texts. `where` keeps only rows whose fields equal its values.
    `drop_empty` leaves out (and reports) rows whose text or target is empty instead of failing."""
    examples, dropped = [], []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise PlatformError(f"{source} row {number}: expected an object, got {type(row).__name__}")
        if where:
            missing = [k for k in where if k not in row]
            if missing:
                raise PlatformError(f"{source} row {number}: field '{missing[0]}' (from `where`) is missing")
            if any(str(row[k]) != v for k, v in where.items()):
                continue
        for field in (text_field, target_field):
            if field not in row or row[field] is None:
                raise PlatformError(f"{source} row {number}: field '{field}' is missing")
        text = row[text_field]
        if not isinstance(text, str):
            raise PlatformError(f"{source} row {number}: field '{text_field}' must be a string, got {type(text).__name__}")
        if drop_empty and (not text.strip() or _is_empty(row[target_field])):
            dropped.append(number)
            continue
        if not text.strip():
            raise PlatformError(f"{source} row {number}: field '{text_field}' is empty")
        refs = (_label if labels else _references)(row[target_field], source, number, target_field)
        examples.append(Example(text=text.replace("\r\n", "\n").strip(), references=refs, row=number))
    if where and not examples:
        raise PlatformError(f"{source}: no row matches where={where}")
    if dropped:
        shown = ", ".join(map(str, dropped[:5])) + (", ..." if len(dropped) > 5 else "")
        print(f"[data] {source}: left out {len(dropped)} row(s) with an empty field (rows {shown})", flush=True)
    return examples


def _is_empty(value) -> bool:
    values = value if isinstance(value, list) else [value]
    return not values or any(isinstance(v, str) and not v.strip() for v in values)


def _subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    if limit is None or limit >= len(examples):
        return examples
    picked = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in picked]


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    eval: list[Example]
    labels: tuple[str, ...] | None = None  # classification: class names in index order
    sources: dict[str, str] = dataclass_field(default_factory=dict)  # split -> the file or hub set it was read from
    validation: list[Example] | None = None  # scored during training, when a task keeps it apart from `eval`


def load_splits(spec_dataset, seed: int, labels: bool = False) -> Splits:
    """Train and eval examples for one dataset entry of the spec, with fixed-seed splitting.
    `labels`: the target field holds class labels (classification), not reference texts."""
    sources: dict[str, str] = {}

    def load(split: str, ref) -> list[Example]:
        rows, sources[split] = read_ref(ref, f"dataset '{spec_dataset.name}' {split}")
        return validate_rows(rows, spec_dataset.text_field, spec_dataset.target_field, sources[split],
                             labels=labels, where=spec_dataset.where, drop_empty=spec_dataset.drop_empty)

    train = load("train", spec_dataset.train)
    if spec_dataset.eval:
        evaluation = load("eval", spec_dataset.eval)
    else:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, round(len(train) * spec_dataset.eval_fraction))
        if n_eval >= len(train):
            raise PlatformError(f"dataset '{spec_dataset.name}' has too few rows ({len(train)} in {sources['train']}) "
                               "to split off an eval set")
        held = set(order[:n_eval])
        evaluation = [ex for i, ex in enumerate(train) if i in held]
        train = [ex for i, ex in enumerate(train) if i not in held]
        sources["eval"] = f"{sources['train']} (held-out {spec_dataset.eval_fraction:g}, seed {seed})"
    if spec_dataset.exclude_leaking:
        evaluation = without_leaking(train, evaluation, spec_dataset.name)
        if not evaluation:
            raise PlatformError(f"dataset '{spec_dataset.name}': every eval row overlaps train (exclude_leaking)")
        sources["eval"] += " (rows that overlap train left out)"
    return Splits(
        train=_subsample(train, spec_dataset.max_train_rows, seed),
        eval=_subsample(evaluation, spec_dataset.max_eval_rows, seed + 1),
        sources=sources,
    )
