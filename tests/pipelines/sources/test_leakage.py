"""The leakage check between a train and an eval split: duplicates, containment either way, whole
words only, and `exclude_leaking`, which scores only the rows that do not overlap."""
import json
import random
import time

import mlflow
import pytest

from pipelines.config import DatasetSource
from pipelines.errors import PlatformError
from pipelines.sources.datasets import load_splits
from pipelines.sources.leakage import log_leakage, measure, normalise

TRAIN = ["a gorgeous , witty , seductive movie .", "the acting is fine but the script is about as interesting",
         "one of the greatest family-oriented fantasy-adventure movies ever"]


def test_duplicates_and_containment_either_way_are_found_after_normalising():
    evaluation = ["A   Gorgeous , witty , seductive movie .",  # exact, once case and spacing are ignored
                  "the acting is fine but",  # inside a train text
                  "it is one of the greatest family-oriented fantasy-adventure movies ever made",  # holds one
                  "an unseen sentence about something else entirely"]
    leakage = measure(TRAIN, evaluation)
    assert (leakage.exact, leakage.inside_train, leakage.contains_train) == ({0}, {1}, {2})
    assert leakage.shares() == {"exact_share": 0.25, "inside_train_share": 0.25, "contains_train_share": 0.25,
                                "leak_share": 0.75}


def test_containment_is_whole_words_and_needs_enough_words():
    # "witty , seductive movie" is four words inside train; "ting is fine but" starts mid-word;
    # "the acting" is too short to count (two words are found inside most texts by chance).
    leakage = measure(TRAIN, ["witty , seductive movie", "ting is fine but", "the acting"])
    assert leakage.inside_train == {0} and not leakage.contains_train and not leakage.exact
    assert normalise(" Two\n words ") == " two words "


def test_long_texts_sharing_a_long_prefix_are_confirmed_whole():
    # Dialogues share their first turns; only the one that holds the whole train text counts.
    opening = "#person1#: good morning , how can i help you today ? " * 3
    train = [opening + "i want to open an account ."]
    evaluation = [opening + "i want to close an account .", "well . " + opening + "i want to open an account . bye"]
    assert measure(train, evaluation).leaking == {1}


def test_the_check_is_fast_on_sst2_sizes():
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    sentences = [" ".join(rng.choices(words, k=20)) for _ in range(7000)]
    train = [" ".join(s.split()[i:i + rng.randint(1, 20)]) for s in sentences for i in range(0, 20, 2)][:60_000]
    evaluation = [" ".join(s.split()[1:rng.randint(3, 19)]) for s in rng.sample(sentences, 6700)]
    started = time.perf_counter()
    leakage = measure(train, evaluation)
    assert time.perf_counter() - started < 10  # 60k x 6.7k rows; ~1 s here
    assert leakage.shares()["leak_share"] > 0.5  # the eval rows of the 6,000 sentences train holds


def write(path, texts):
    path.write_text("".join(json.dumps({"dialogue": t, "summary": "s"}) + "\n" for t in texts))
    return str(path)


def test_exclude_leaking_scores_only_the_rows_that_do_not_overlap(tmp_path, capsys):
    evaluation = ["the acting is fine but", "an unseen sentence about something else", TRAIN[0]]
    dataset = DatasetSource(name="d", train=write(tmp_path / "t.jsonl", TRAIN), eval=write(tmp_path / "e.jsonl", evaluation),
                            exclude_leaking=True)
    splits = load_splits(dataset, seed=0)
    assert [ex.text for ex in splits.eval] == ["an unseen sentence about something else"]
    assert splits.sources["eval"].endswith("(rows that overlap train left out)")
    assert "left out 2 of 3 eval rows that overlap train" in capsys.readouterr().out
    with pytest.raises(PlatformError, match="dataset 'd': every eval row overlaps train"):
        load_splits(dataset.model_copy(update={"eval": write(tmp_path / "e2.jsonl", TRAIN[:1])}), seed=0)


def test_a_grid_logs_the_shares_and_warns_above_the_threshold(tmp_path, tracking, capsys):
    dataset = DatasetSource(name="d", train=write(tmp_path / "t.jsonl", TRAIN), eval=write(tmp_path / "e.jsonl", TRAIN[:1]))
    with mlflow.start_run() as run:
        log_leakage({"d": load_splits(dataset, seed=0)})
    logged = mlflow.get_run(run.info.run_id).data
    assert logged.metrics["leakage.d.exact_share"] == 1.0 and logged.metrics["leakage.d.leak_share"] == 1.0
    assert logged.tags["leakage.d"].startswith("warning")
    assert "warning: d's eval split leaks" in capsys.readouterr().out
