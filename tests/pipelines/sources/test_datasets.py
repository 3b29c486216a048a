import json

import pandas as pd
import pytest

from pipelines.config import DataFile, DatasetSource
from pipelines.errors import PlatformError
from pipelines.sources.datasets import load_splits, read_ref, read_rows, validate_rows


def rows(n=10):
    return [{"dialogue": f"A: line {i}\nB: reply {i}", "summary": f"summary {i}"} for i in range(n)]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".json"])
def test_reads_every_local_format(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    data = rows(3)
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
    elif suffix == ".json":
        path.write_text(json.dumps(data))
    elif suffix == ".csv":
        pd.DataFrame(data).to_csv(path, index=False)
    else:
        pd.DataFrame(data).to_parquet(path)
    loaded = read_rows(str(path))
    assert [r["summary"] for r in loaded] == ["summary 0", "summary 1", "summary 2"]


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({"dialogue": "A: hi"}, "row 2: field 'summary' is missing"),
        ({"dialogue": "   ", "summary": "s"}, "row 2: field 'dialogue' is empty"),
        ({"dialogue": 42, "summary": "s"}, "row 2: field 'dialogue' must be a string, got int"),
        ({"dialogue": "A: hi", "summary": ""}, "row 2: field 'summary' is empty"),
        ({"dialogue": "A: hi", "summary": ["ok", 3]}, "row 2: field 'summary' must be a string, got int"),
        ("not an object", "row 2: expected an object"),
    ],
)
def test_bad_rows_name_the_row(bad_row, message):
    with pytest.raises(PlatformError, match=message):
        validate_rows([rows(1)[0], bad_row], "dialogue", "summary", "set.jsonl")


def test_missing_file_and_bad_json(tmp_path):
    with pytest.raises(PlatformError, match="dataset file not found: .*missing.jsonl"):
        read_rows(str(tmp_path / "missing.jsonl"))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"dialogue": "x", "summary": "y"}\n{oops\n')
    with pytest.raises(PlatformError, match="broken.jsonl row 2: not valid JSON"):
        read_rows(str(broken))
    with pytest.raises(PlatformError, match="use a .jsonl/.json/.csv/.parquet/.txt file"):
        read_rows(str(tmp_path / "data.xml"))


def test_multiple_references_are_kept():
    examples = validate_rows([{"dialogue": "A: hi", "summary": ["one", "two"]}], "dialogue", "summary", "s")
    assert examples[0].references == ("one", "two")


def test_fixed_seed_split_is_disjoint_and_repeatable(tmp_path):
    path = tmp_path / "all.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(50)))
    source = DatasetSource(name="d", train=str(path), eval_fraction=0.2)
    first, second = load_splits(source, seed=7), load_splits(source, seed=7)
    assert [e.row for e in first.eval] == [e.row for e in second.eval]
    assert len(first.eval) == 10 and len(first.train) == 40
    assert not {e.row for e in first.eval} & {e.row for e in first.train}
    assert [e.row for e in load_splits(source, seed=8).eval] != [e.row for e in first.eval]


def test_subsampling_caps_rows(tmp_path):
    path = tmp_path / "all.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(30)))
    source = DatasetSource(name="d", train=str(path), eval=str(path), max_train_rows=5, max_eval_rows=3)
    splits = load_splits(source, seed=1)
    assert len(splits.train) == 5 and len(splits.eval) == 3


@pytest.fixture
def fake_hub(monkeypatch):
    """datasets.load_dataset as the hub would answer it; `calls` records what was asked."""
    import datasets

    calls = []

    def fake_load_dataset(name, split, revision=None):
        calls.append((name, split, revision))
        if name == "broken/set":
            raise ConnectionError("offline\nmore detail")
        return [{"sentence": "A: hi", "label": 1}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def test_hub_datasets_go_through_load_dataset_at_their_revision(fake_hub):
    assert read_rows("hf:stanfordnlp/sst2:validation") == [{"sentence": "A: hi", "label": 1}]
    assert read_rows("hf:stanfordnlp/sst2@8d51e7e") and read_rows("hf:stanfordnlp/sst2:test@v1")
    assert fake_hub == [("stanfordnlp/sst2", "validation", None), ("stanfordnlp/sst2", "train", "8d51e7e"),
                        ("stanfordnlp/sst2", "test", "v1")]
    with pytest.raises(PlatformError, match="cannot load dataset 'hf:broken/set': offline$"):
        read_rows("hf:broken/set")


def test_a_data_file_reads_its_local_copy_when_it_exists_else_the_pinned_hub_set(tmp_path, fake_hub):
    local = tmp_path / "copy.jsonl"
    ref = DataFile(hf="stanfordnlp/sst2", split="validation", revision="abc", columns={"sentence": "text"},
                   local=str(local))
    assert read_ref(ref) == ([{"text": "A: hi", "label": 1}], "hf:stanfordnlp/sst2:validation@abc")
    local.write_text('{"text": "here", "label": 0}\n')
    assert read_ref(ref) == ([{"text": "here", "label": 0}], str(local))
    assert fake_hub == [("stanfordnlp/sst2", "validation", "abc")]


def test_a_hub_set_that_cannot_be_had_names_the_dataset_and_the_local_field(tmp_path, fake_hub):
    dataset = DatasetSource(name="sst2", train={"hf": "broken/set", "local": str(tmp_path / "absent.jsonl")},
                            text_field="sentence", target_field="label")
    with pytest.raises(PlatformError) as info:
        load_splits(dataset, seed=0)
    assert str(info.value) == (f"dataset 'sst2' train: cannot load dataset 'hf:broken/set:train': offline; no local "
                               f"copy at '{tmp_path / 'absent.jsonl'}' either (set `local:` under it to the path of a "
                               "downloaded copy)")
    with pytest.raises(PlatformError, match="dataset file not found: .*absent.jsonl"):
        read_ref(DataFile(local=str(tmp_path / "absent.jsonl")))


def test_a_data_file_needs_a_hub_name_or_a_local_path():
    with pytest.raises(ValueError, match="needs `hf`"):
        DataFile(split="train")


def test_splits_record_where_each_split_was_read_from(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows(10)))
    splits = load_splits(DatasetSource(name="d", train={"hf": "x/y", "local": str(train)}), seed=0)
    assert splits.sources == {"train": str(train), "eval": f"{train} (held-out 0.2, seed 0)"}


def test_labels_are_kept_as_strings_and_where_filters_rows():
    from pipelines.sources.datasets import validate_rows

    rows = [{"t": "a", "y": 1, "d": "x"}, {"t": "b", "y": "0", "d": "y"}, {"t": "c", "y": True, "d": "x"}]
    examples = validate_rows(rows, "t", "y", "s.jsonl", labels=True, where={"d": "x"})
    assert [(e.text, e.references, e.row) for e in examples] == [("a", ("1",), 1), ("c", ("1",), 3)]


@pytest.mark.parametrize("rows, message", [
    ([{"t": "a", "y": [1]}], "s.jsonl row 1: label field 'y' must be a string or an integer, got list"),
    ([{"t": "a", "y": " "}], "s.jsonl row 1: label field 'y' is empty"),
    ([{"t": "a", "y": 1}], "s.jsonl row 1: field 'd' \\(from `where`\\) is missing"),
])
def test_bad_labels_and_where_fields_name_the_row(rows, message):
    from pipelines.sources.datasets import validate_rows

    where = {"d": "x"} if "where" in message else None
    with pytest.raises(PlatformError, match=message):
        validate_rows(rows, "t", "y", "s.jsonl", labels=True, where=where)


def test_drop_empty_leaves_out_rows_with_an_empty_field_and_says_which(capsys):
    rows = [{"dialogue": "A: hi", "summary": "s"}, {"dialogue": "", "summary": "s"},
            {"dialogue": "B: yo", "summary": [" "]}, {"dialogue": "C: ok", "summary": "t"}]
    kept = validate_rows(rows, "dialogue", "summary", "d.jsonl", drop_empty=True)
    assert [ex.row for ex in kept] == [1, 4]
    assert "[data] d.jsonl: left out 2 row(s) with an empty field (rows 2, 3)" in capsys.readouterr().out
    with pytest.raises(PlatformError, match="d.jsonl row 2: field 'dialogue' is empty"):
        validate_rows(rows, "dialogue", "summary", "d.jsonl")
