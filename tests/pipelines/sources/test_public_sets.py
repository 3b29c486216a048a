"""The builders of the non-hub sets (`python -m pipelines.sources.public_sets`), on tiny inputs
written here: a Gutenberg file, the UCI zip, the two Kaggle CSVs. Nothing is downloaded."""
from __future__ import annotations

import io
import json
import urllib.error
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from pipelines.errors import PlatformError
from pipelines.sources import public_sets
from pipelines.sources.public_sets import first_share, labelled_lines, main, talk_id, ted_talk

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"

# Without the blank lines around it the body has 93 characters: 90% is character 83, inside
# "Cinco y seis.", so the cut falls back to the line break after "Cuatro.".
BODY = "El ingenioso hidalgo don Quijote\n\n\nTASA\n\nUno, año.\nDos.\nTres, más.\nCuatro.\nCinco y seis.\nFin.\n"
TRAIN = "El ingenioso hidalgo don Quijote\n\n\nTASA\n\nUno, año.\nDos.\nTres, más.\nCuatro.\n"


def gutenberg(body: str, start: str = "*** START OF THE PROJECT GUTENBERG EBOOK DON QUIJOTE ***",
              end: str = "*** END OF THE PROJECT GUTENBERG EBOOK DON QUIJOTE ***") -> str:
    text = (f"The Project Gutenberg eBook of Don Quijote\n\nThis ebook is for the use of anyone.\n\n{start}\n\n\n"
            f"{body}\n\n{end}\n\nUpdated editions will replace the previous one.\n")
    return text.replace("\n", "\r\n")


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_quijote_keeps_the_first_90_percent_of_the_book_cut_at_a_line_break(tmp_path, capsys):
    source, out = tmp_path / "pg2000.txt", tmp_path / "new" / "quijote_train.txt"
    source.write_bytes(("\ufeff" + gutenberg(BODY)).encode("utf-8"))
    code, printed, _ = run(["quijote", "--from", str(source), "--out", str(out)], capsys)
    assert code == 0
    assert len(BODY.strip("\n")) == 93 and len(TRAIN) == 75
    assert out.read_bytes() == TRAIN.encode("utf-8")  # no \r, no boilerplate, the title first
    assert printed.splitlines() == [f"reading {source}", f"writing 75 characters (90% of 93) to {out}"]


def test_quijote_reads_old_latin1_files_with_the_this_ebook_wording(tmp_path, capsys):
    source, out = tmp_path / "old.txt", tmp_path / "q.txt"
    source.write_bytes(gutenberg(BODY, "*** START OF THIS PROJECT GUTENBERG EBOOK DON QUIJOTE ***",
                                 "***END OF THIS PROJECT GUTENBERG ETEXT DON QUIJOTE").encode("latin-1"))
    assert run(["quijote", "--from", str(source), "--out", str(out)], capsys)[0] == 0
    assert out.read_text(encoding="utf-8") == TRAIN


def test_first_share_takes_a_line_break_right_at_the_point():
    assert first_share("abcd\nefgh\n", 0.5, "t") == "abcd\n"  # point 5: the break at 4 is inside
    assert first_share("abcd\nefgh\nij", 0.9, "t") == "abcd\nefgh\n"
    with pytest.raises(PlatformError, match="^t: no line break in the first 90% of the text$"):
        first_share("one long line", 0.9, "t")


def test_a_file_without_gutenberg_markers_fails_by_name_and_writes_nothing(tmp_path, capsys):
    source, out = tmp_path / "book.txt", tmp_path / "q.txt"
    source.write_text("Just a book.\nNo markers.\n", encoding="utf-8")
    code, _, err = run(["quijote", "--from", str(source), "--out", str(out)], capsys)
    assert code == 2
    assert err == (f"error: {source}: no '*** START/END OF THE PROJECT GUTENBERG EBOOK' markers "
                   "(not a Gutenberg text?)\n")
    assert list(tmp_path.iterdir()) == [source]


def test_downloads_with_a_timeout_and_a_failed_download_points_at_from(tmp_path, capsys, monkeypatch):
    calls = []

    def fake_urlopen(url, timeout):
        calls.append((url, timeout))
        return io.BytesIO(gutenberg(BODY).encode("utf-8"))

    monkeypatch.setattr(public_sets.urllib.request, "urlopen", fake_urlopen)
    out = tmp_path / "q.txt"
    code, printed, _ = run(["quijote", "--out", str(out)], capsys)
    assert code == 0 and out.read_text(encoding="utf-8") == TRAIN
    assert calls == [(public_sets.QUIJOTE_URL, 60)] and printed.startswith(f"downloading {public_sets.QUIJOTE_URL}\n")

    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(public_sets.urllib.request, "urlopen", offline)
    code, _, err = run(["quijote", "--out", str(tmp_path / "other.txt")], capsys)
    assert code == 2
    assert err == (f"error: cannot download {public_sets.QUIJOTE_URL} (no network); "
                   "--from takes an already downloaded copy\n")
    assert not (tmp_path / "other.txt").exists()


def uci_zip(path: Path, amazon: str, yelp: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("sentiment labelled sentences/amazon_cells_labelled.txt", amazon)
        archive.writestr("sentiment labelled sentences/imdb_labelled.txt", "Not used.\t1\n")
        archive.writestr("sentiment labelled sentences/yelp_labelled.txt", yelp)
        archive.writestr("__MACOSX/sentiment labelled sentences/._yelp_labelled.txt", b"\x00\x05\x16\x07")
    return path


def test_uci_sentiment_writes_amazon_then_yelp_rows_in_file_order(tmp_path, capsys):
    source = uci_zip(tmp_path / "s.zip", "Good case, Excellent value.\t1\nBattery died.  \t0\n",
                     "Crema Café is great.\t1\r\n\r\nSlow service.\t0")
    out = tmp_path / "data" / "amazon_yelp.jsonl"
    code, printed, _ = run(["uci-sentiment", "--from", str(source), "--out", str(out)], capsys)
    assert code == 0 and printed.splitlines()[-1] == f"writing 4 rows to {out}"
    assert out.read_text(encoding="utf-8").splitlines() == [
        '{"text": "Good case, Excellent value.", "label": 1, "domain": "amazon"}',
        '{"text": "Battery died.", "label": 0, "domain": "amazon"}',
        '{"text": "Crema Café is great.", "label": 1, "domain": "yelp"}',
        '{"text": "Slow service.", "label": 0, "domain": "yelp"}',
    ]


@pytest.mark.parametrize("yelp, line", [("Fine.\t1\nNo tab here\n", "No tab here"), ("Fine.\t1\nOdd.\t2\n", "Odd.\t2")])
def test_a_malformed_uci_line_is_named_by_member_and_line_and_nothing_is_written(tmp_path, capsys, yelp, line):
    source, out = uci_zip(tmp_path / "s.zip", "Good.\t1\n", yelp), tmp_path / "u.jsonl"
    code, _, err = run(["uci-sentiment", "--from", str(source), "--out", str(out)], capsys)
    assert code == 2
    assert err == f"error: sentiment labelled sentences/yelp_labelled.txt line 2: expected 'sentence<TAB>0 or 1', got {line!r}\n"
    assert not out.exists()


def test_a_zip_without_the_members_or_not_a_zip_is_refused(tmp_path, capsys):
    empty, text = tmp_path / "empty.zip", tmp_path / "page.zip"
    zipfile.ZipFile(empty, "w").close()
    text.write_text("<html>not found</html>")
    assert run(["uci-sentiment", "--from", str(empty), "--out", str(tmp_path / "u.jsonl")], capsys)[2] == (
        f"error: {empty} has no 'sentiment labelled sentences/amazon_cells_labelled.txt'\n")
    assert run(["uci-sentiment", "--from", str(text), "--out", str(tmp_path / "u.jsonl")], capsys)[2] == (
        f"error: {text} is not a zip file\n")
    assert not (tmp_path / "u.jsonl").exists()


TALKS = [  # name, title, speaker, event, tags, description, duration, published, url (Kaggle's trailing newline)
    ("Ken Robinson: Do schools kill creativity?", "Do schools kill creativity?", "Ken Robinson", "TED2006",
     "['children', 'creativity']", "Sir Ken on schools.", "1164", "1151367060",
     "https://www.ted.com/talks/ken_robinson_says_schools_kill_creativity\n"),
    ("Al Gore: Averting the climate crisis", "Averting the climate crisis", "Al Gore", "TED2006",
     "['climate change']", "Fifteen ways.", "977", "1151367060", "https://www.ted.com/talks/al_gore_on_averting_climate_crisis\n"),
    ("A: No words", "No words", "A", "TEDx", "[]", "Silent.", "60", "1200000000", "https://www.ted.com/talks/a_no_words\n"),
    ("B: Café", "Café, \"quoted\"", "B", "TED2010", "['food', \"women's health\"]", "Line one.\nLine two. ", "300",
     "1300000000", "https://www.ted.com/talks/b_cafe?language=en\n"),
    ("C: Last", "Last", "C", "TED2017", "['end']", "The end.", "10", "1500000000", "https://www.ted.com/talks/c_last\n"),
]
TRANSCRIPTS = {  # in another order than ted_main; "a_no_words" has none
    "c_last": "Bye.(Applause)", "b_cafe?language=en": "Bonjour.", "al_gore_on_averting_climate_crisis": "Thank you.",
    "ken_robinson_says_schools_kill_creativity": "Good morning. (Laughter)",
}


def kaggle_folder(folder: Path, transcripts: bool = True) -> Path:
    folder.mkdir()
    columns = ["comments", "description", "duration", "event", "film_date", "languages", "main_speaker", "name",
               "num_speaker", "published_date", "ratings", "related_talks", "speaker_occupation", "tags", "title",
               "url", "views"]
    rows = [dict(zip(["name", "title", "main_speaker", "event", "tags", "description", "duration", "published_date",
                      "url"], talk), comments="1", film_date="1", languages="1", num_speaker="1", ratings="[]",
                 related_talks="[]", speaker_occupation="", views="1") for talk in TALKS]
    pd.DataFrame(rows, columns=columns).to_csv(folder / "ted_main.csv", index=False)
    if transcripts:
        pd.DataFrame([{"transcript": text, "url": f"https://www.ted.com/talks/{slug}\n"}
                      for slug, text in TRANSCRIPTS.items()]).to_csv(folder / "transcripts.csv", index=False)
    return folder


def test_ted_writes_all_metadata_and_a_seeded_sample_of_talks_with_transcripts(tmp_path, capsys):
    source, out = kaggle_folder(tmp_path / "kaggle"), tmp_path / "ted"
    public_sets.build_ted(source, out, sample=3)
    metadata = [json.loads(line) for line in (out / "ted_metadata_all.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [m["id"] for m in metadata] == ["ken_robinson_says_schools_kill_creativity", "al_gore_on_averting_climate_crisis",
                                           "a_no_words", "b_cafe", "c_last"]
    assert metadata[3] == {"id": "b_cafe", "title": "Café, \"quoted\"", "speaker": "B", "event": "TED2010",
                           "tags": ["food", "women's health"], "description": "Line one.\nLine two.", "duration_s": 300,
                           "published_unix": 1300000000, "url": "https://www.ted.com/talks/b_cafe?language=en"}
    assert metadata[2]["tags"] == [] and metadata[0]["url"] == "https://www.ted.com/talks/ken_robinson_says_schools_kill_creativity"
    talks = [json.loads(line) for line in (out / "ted_talks_3.jsonl").read_text(encoding="utf-8").splitlines()]
    # random.Random(0).sample of the 4 talks with a transcript, sorted by url, picks ken, b_cafe, al_gore:
    # they are written in ted_main order, and a_no_words (no transcript) is never a candidate.
    assert [t["id"] for t in talks] == ["ken_robinson_says_schools_kill_creativity", "al_gore_on_averting_climate_crisis",
                                        "b_cafe"]
    assert talks[2] == {**metadata[3], "transcript": "Bonjour."}
    assert talks[0]["transcript"] == "Good morning. (Laughter)"
    assert list(talks[0]) == list(metadata[0]) + ["transcript"]
    assert capsys.readouterr().out.splitlines()[-2:] == [f"writing 5 rows to {out / 'ted_metadata_all.jsonl'}",
                                                         f"writing 3 rows to {out / 'ted_talks_3.jsonl'}"]


def test_ted_needs_from_and_names_a_missing_csv_and_the_kaggle_command(tmp_path, capsys):
    code, _, err = run(["ted", "--out", str(tmp_path / "ted")], capsys)
    assert code == 2 and err.startswith("error: ted needs --from DIR holding ted_main.csv and transcripts.csv")
    source = kaggle_folder(tmp_path / "kaggle", transcripts=False)
    code, _, err = run(["ted", "--from", str(source), "--out", str(tmp_path / "ted")], capsys)
    assert code == 2
    assert err == (f"error: {source / 'transcripts.csv'} not found: get it with "
                   f"`kaggle datasets download rounakbanik/ted-talks` and unzip it into {source}\n")
    assert not (tmp_path / "ted").exists()  # ted_metadata_all.jsonl was not written either


def test_ted_refuses_too_few_transcripts_and_bad_tags(tmp_path):
    source = kaggle_folder(tmp_path / "kaggle")
    with pytest.raises(PlatformError, match=r"^only 4 talks in .* have a transcript; 400 are needed$"):
        public_sets.build_ted(source, tmp_path / "ted")
    row = dict(zip(["name", "title", "main_speaker", "event", "tags", "description", "duration", "published_date",
                    "url"], TALKS[0]), tags="children, creativity")
    with pytest.raises(PlatformError, match=r"^ted_main.csv row 7: tags must be a list of strings"):
        ted_talk(row, 7)
    with pytest.raises(PlatformError, match=r"^ted_main.csv row 2: duration must be a number, got '20 min'$"):
        ted_talk({**row, "tags": "[]", "duration": "20 min"}, 2)
    assert not (tmp_path / "ted").exists()


def test_talk_ids_drop_query_strings_and_trailing_newlines():
    assert talk_id("https://www.ted.com/talks/b_cafe?language=en\n") == "b_cafe"
    assert talk_id("https://www.ted.com/talks/c_last/ \r\n") == "c_last"


def test_a_failed_write_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    source = uci_zip(tmp_path / "s.zip", "Good.\t1\n", "Fine.\t0\n")
    out = tmp_path / "out" / "u.jsonl"

    def full_disk(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(public_sets.os, "replace", full_disk)
    code, _, err = run(["uci-sentiment", "--from", str(source), "--out", str(out)], capsys)
    assert code == 2 and err == f"error: cannot write {out}: No space left on device\n"
    assert list(out.parent.iterdir()) == []


@pytest.mark.skipif(not (SHARED / "ted_talks" / "ted_metadata_all.jsonl").is_file(), reason="no ../shared/data")
def test_rows_match_the_format_of_the_shared_copies():
    # Read-only: rebuild the first row of each shared file from its source format and compare the JSON lines.
    uci_line = (SHARED / "uci_sentiment_sentences" / "amazon_yelp.jsonl").open(encoding="utf-8").readline()
    uci = json.loads(uci_line)
    rebuilt = labelled_lines(f"{uci['text']}\t{uci['label']}\n", "m", uci["domain"])
    assert public_sets._jsonl(rebuilt) == uci_line
    ted_line = (SHARED / "ted_talks" / "ted_metadata_all.jsonl").open(encoding="utf-8").readline()
    ted = json.loads(ted_line)
    row = {"title": ted["title"], "main_speaker": ted["speaker"], "event": ted["event"], "tags": repr(ted["tags"]),
           "description": ted["description"], "duration": str(ted["duration_s"]),
           "published_date": str(ted["published_unix"]), "url": ted["url"] + "\n"}
    assert public_sets._jsonl([ted_talk(row, 1)]) == ted_line
