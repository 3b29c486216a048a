"""The Sentiment tab's callback on the registered tiny classifier: good, empty, long and huge input."""
from __future__ import annotations

import mlflow

from apps.sentiment_tab import PLACEHOLDER, classify_fn
from apps.webapp import describe


def test_callback_answers_good_empty_and_huge_input(champion):
    classify = classify_fn(mlflow.pyfunc.load_model("models:/sentiment-classifier@champion"))
    result, confidences, latency = classify("the movie was great fun")
    assert result.startswith("positive (") and set(confidences) == {"negative", "positive"} and "ms" in latency
    assert classify("   ") == (PLACEHOLDER, None, "")
    long_result, _, _ = classify("the plot was awful " * 50)  # 200 words > max_seq_len 32 tokens
    assert long_result.startswith("negative (") and "only its beginning was read" in long_result
    huge, confidences, _ = classify("x" * 200_000)
    assert huge.startswith("Cannot classify this input:") and "characters" in huge and confidences is None
    assert describe("models:/sentiment-classifier@champion") == (
        f"sentiment-classifier v{champion.version} (@champion, run {champion.run_id[:8]})")
