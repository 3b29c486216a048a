"""Build the local copies of the three public sets the specs use that are not on the Hugging Face Hub.

The specs name these files by their `local:` paths under `../shared/data/`; a clone without that
folder builds each one from its public source with one command:

    python -m pipelines.sources.public_sets quijote         # Project Gutenberg eBook #2000
    python -m pipelines.sources.public_sets uci-sentiment   # UCI dataset 331 (zip)
    python -m pipelines.sources.public_sets ted --from DIR  # Kaggle rounakbanik/ted-talks, unzipped

`--out PATH` writes elsewhere (a directory for `ted`); `--from PATH` reads an already downloaded
copy (the .txt, the .zip, the Kaggle folder) instead of the network. Every file is written to a
temporary name and renamed, so a failed run leaves nothing half-written.

- quijote: Don Quijote (public domain), Gutenberg boilerplate removed, the first 90% of the book
  cut back to a line break (the Quijote split takes its last 5% as test, the 5% before as validation).
- uci-sentiment: Sentiment Labelled Sentences (Kotzias et al., KDD 2015; CC BY 4.0), Amazon then
  Yelp, `{"text", "label": 0|1, "domain"}` per line in file order.
- ted: TED Talks metadata and transcripts (R. Banik, Kaggle; CC BY-NC-SA 4.0, non-commercial).
  Kaggle needs an account, so this set cannot download by itself. `ted_talks_400.jsonl` is an
  equivalent set, not the one in ../shared/data: those 400 were chosen differently and their
  transcripts come from TED's captions (saranyan/TED-Talks, with line breaks and a `source_file`),
  these from Kaggle's transcripts.csv (one line per talk).
"""
from __future__ import annotations

import argparse
import ast
import http.client
import io
import json
import os
import random
import re
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from pipelines.errors import PlatformError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared/data from the repo root
QUIJOTE_URL = "https://www.gutenberg.org/cache/epub/2000/pg2000.txt"
UCI_URL = "https://archive.ics.uci.edu/static/public/331/sentiment+labelled+sentences.zip"
UCI_MEMBERS = {"amazon": "sentiment labelled sentences/amazon_cells_labelled.txt",
               "yelp": "sentiment labelled sentences/yelp_labelled.txt"}
KAGGLE_COMMAND = "kaggle datasets download rounakbanik/ted-talks"
TED_SAMPLE = 400
TED_COLUMNS = ("name", "title", "main_speaker", "event", "tags", "description", "duration", "published_date", "url")
DEFAULT_OUT = {"quijote": DATA / "spanish_quijote" / "quijote_train.txt",
               "uci-sentiment": DATA / "uci_sentiment_sentences" / "amazon_yelp.jsonl",
               "ted": DATA / "ted_talks"}
# Older Gutenberg files say "THIS PROJECT GUTENBERG EBOOK" or "ETEXT"; some omit the closing stars.
_MARKER = r"^\*\*\*\s*{} OF (?:THE|THIS) PROJECT GUTENBERG E(?:BOOK|TEXT)\b.*$"
GUTENBERG_START = re.compile(_MARKER.format("START"), re.M | re.I)
GUTENBERG_END = re.compile(_MARKER.format("END"), re.M | re.I)


def _fetch(url: str, source: Path | None) -> bytes:
    """The bytes of `source` when given, else of `url`."""
    if source is not None:
        if not source.is_file():
            raise PlatformError(f"--from file not found: {source}")
        print(f"reading {source}", flush=True)
        return source.read_bytes()
    print(f"downloading {url}", flush=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts and cut connections
        raise PlatformError(f"cannot download {url} ({getattr(exc, 'reason', exc)}); "
                            "--from takes an already downloaded copy") from None


def _decode(data: bytes) -> str:
    # UTF-8 (BOM dropped) first; older Gutenberg and UCI files are Latin-1, which decodes any byte.
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _write_all(files: dict[Path, str]) -> None:
    """Write every file to a temporary name first and rename them only once all are written."""
    temps: list[Path] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append(Path(name))
            with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
                out.write(text)
        for temp, path in zip(temps, files):
            os.replace(temp, path)
    except OSError as exc:
        raise PlatformError(f"cannot write {exc.filename or 'the output'}: {exc.strerror or exc}") from None
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def gutenberg_body(text: str, name: str) -> str:
    """The book between the START and END markers, without surrounding blank lines."""
    text = text.replace("\r\n", "\n")
    start = GUTENBERG_START.search(text)
    end = GUTENBERG_END.search(text, start.end()) if start else None
    if not start or not end:
        raise PlatformError(f"{name}: no '*** START/END OF THE PROJECT GUTENBERG EBOOK' markers (not a Gutenberg text?)")
    lines = text[start.end():end.start()].split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def first_share(text: str, share: float, name: str) -> str:
    """The first `share` of `text` by characters, cut back to the last line break before that point."""
    cut = text.rfind("\n", 0, int(len(text) * share)) + 1
    if cut == 0:
        raise PlatformError(f"{name}: no line break in the first {share:.0%} of the text")
    return text[:cut]


def build_quijote(source: Path | None, out: Path) -> None:
    name = str(source or QUIJOTE_URL)
    body = gutenberg_body(_decode(_fetch(QUIJOTE_URL, source)), name)
    train = first_share(body, 0.9, name)
    print(f"writing {len(train):,} characters (90% of {len(body):,}) to {out}", flush=True)
    _write_all({out: train})


def labelled_lines(text: str, member: str, domain: str) -> list[dict]:
    """Rows of a `sentence<TAB>0|1` file; blank lines are skipped."""
    rows = []
    # split on \n only: str.splitlines also breaks at \x0b or \u2028 inside a sentence and shifts the numbers
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        sentence, tab, label = line.rpartition("\t")
        if not tab or not sentence.strip() or label.strip() not in ("0", "1"):
            raise PlatformError(f"{member} line {number}: expected 'sentence<TAB>0 or 1', got {line[:60]!r}")
        rows.append({"text": sentence.strip(), "label": int(label), "domain": domain})
    return rows


def build_uci_sentiment(source: Path | None, out: Path) -> None:
    data = _fetch(UCI_URL, source)
    name = str(source or UCI_URL)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise PlatformError(f"{name} is not a zip file") from None
    rows = []
    for domain, member in UCI_MEMBERS.items():
        if member not in archive.namelist():
            raise PlatformError(f"{name} has no '{member}'")
        rows += labelled_lines(_decode(archive.read(member)), member, domain)
    print(f"writing {len(rows)} rows to {out}", flush=True)
    _write_all({out: _jsonl(rows)})


def _read_csv(folder: Path, name: str, columns: tuple[str, ...]) -> list[dict]:
    import pandas as pd

    path = folder / name
    if not path.is_file():
        raise PlatformError(f"{path} not found: get it with `{KAGGLE_COMMAND}` and unzip it into {folder}")
    print(f"reading {path}", flush=True)
    # Every cell as its text (an empty one stays "", not NaN); numbers are parsed per row, with the row in errors.
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PlatformError(f"{path} has no column {missing[0]!r}")
    return frame.to_dict(orient="records")


def talk_id(url: str) -> str:
    """The last path segment of a talk's url; Kaggle's urls end in a newline."""
    return url.strip().split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def _whole_number(row: dict, column: str, where: str) -> int:
    try:
        return int(float(row[column]))  # a unix time may have been saved as "1151367060.0"
    except (ValueError, OverflowError):
        raise PlatformError(f"{where}: {column} must be a number, got {row[column][:30]!r}") from None


def _tags(row: dict, where: str) -> list[str]:
    # Kaggle stores the tags as the repr of a Python list: "['children', 'creativity']".
    try:
        tags = ast.literal_eval(row["tags"])
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        tags = None
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise PlatformError(f"{where}: tags must be a list of strings like \"['a', 'b']\", got {row['tags'][:60]!r}")
    return [t.strip() for t in tags]


def ted_talk(row: dict, number: int) -> dict:
    """One ted_main.csv row (1-based `number`, for errors) in the field layout of the local files."""
    where = f"ted_main.csv row {number}"
    url = row["url"].strip()
    return {"id": talk_id(url), "title": row["title"].strip(), "speaker": row["main_speaker"].strip(),
            "event": row["event"].strip(), "tags": _tags(row, where), "description": row["description"].strip(),
            "duration_s": _whole_number(row, "duration", where),
            "published_unix": _whole_number(row, "published_date", where), "url": url}


def build_ted(source: Path | None, out: Path, sample: int = TED_SAMPLE) -> None:
    if source is None:
        raise PlatformError(f"ted needs --from DIR holding ted_main.csv and transcripts.csv (`{KAGGLE_COMMAND}`, "
                            "needs a Kaggle account, then unzip)")
    talks = [ted_talk(row, n) for n, row in enumerate(_read_csv(source, "ted_main.csv", TED_COLUMNS), start=1)]
    transcripts: dict[str, str] = {}
    for row in _read_csv(source, "transcripts.csv", ("transcript", "url")):
        if row["transcript"].strip():
            transcripts.setdefault(row["url"].strip(), row["transcript"].strip())
    # Sorting by url first makes the pick independent of the CSV's row order.
    candidates = sorted(talk["url"] for talk in talks if talk["url"] in transcripts)
    if len(candidates) < sample:
        raise PlatformError(f"only {len(candidates)} talks in {source} have a transcript; {sample} are needed")
    picked = set(random.Random(0).sample(candidates, sample))
    chosen = [{**talk, "transcript": transcripts[talk["url"]]} for talk in talks if talk["url"] in picked]
    metadata, talks_file = out / "ted_metadata_all.jsonl", out / f"ted_talks_{sample}.jsonl"
    print(f"writing {len(talks)} rows to {metadata}", flush=True)
    print(f"writing {len(chosen)} rows to {talks_file}", flush=True)
    _write_all({metadata: _jsonl(talks), talks_file: _jsonl(chosen)})


BUILDERS = {"quijote": build_quijote, "uci-sentiment": build_uci_sentiment, "ted": build_ted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.sources.public_sets",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=list(BUILDERS), help="the set to build")
    parser.add_argument("--out", type=Path, metavar="PATH",
                        help="output file (a directory for ted); default: its ../shared/data path")
    parser.add_argument("--from", dest="source", type=Path, metavar="PATH",
                        help="an already downloaded copy: the .txt, the .zip, or the Kaggle folder (required for ted)")
    args = parser.parse_args(argv)
    try:
        BUILDERS[args.name](args.source, args.out or DEFAULT_OUT[args.name])
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
