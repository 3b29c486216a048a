"""Task metrics. ROUGE comes from `rouge-score` and BLEU from `sacrebleu`: `evaluate.load`
fetches its metric scripts from the hub, which fails offline."""
from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _sentences_on_lines(text: str) -> str:
    # rougeLsum scores summary-level LCS over sentences, which rouge-score reads as lines.
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def rouge(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F-measure (0..1, Porter stemming); with several references,
    each example is scored against its best reference (rouge-score's `score_multi`)."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    keys = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(keys, use_stemmer=True)
    totals = dict.fromkeys(keys, 0.0)
    for pred, refs in zip(predictions, references):
        scores = scorer.score_multi([_sentences_on_lines(r) for r in refs], _sentences_on_lines(pred))
        for key in keys:
            totals[key] += scores[key].fmeasure
    n = max(1, len(predictions))
    return {key: value / n for key, value in totals.items()}


def bleu(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus BLEU and its 1-4-gram precisions (0..100, sacrebleu's 13a tokenizer).
    Examples may have different numbers of references: missing ones are padded with None,
    which sacrebleu skips."""
    import sacrebleu

    width = max(len(r) for r in references)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]
    result = sacrebleu.corpus_bleu(predictions, streams)
    out = {"bleu": result.score}
    out.update({f"precision_{n}": p for n, p in enumerate(result.precisions, start=1)})
    return out


def summarization_scores(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    return {**rouge(predictions, references), **bleu(predictions, references)}


def expected_calibration_error(confidence: list[float], correct: list[bool], bins: int = 10) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins
    weighted by their share of examples. Written here because scikit-learn has no ECE (only the
    reliability curve) and `evaluate`'s metric scripts need the hub."""
    import numpy as np

    conf, hit = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    if conf.size == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            gap += in_bin.mean() * abs(conf[in_bin].mean() - hit[in_bin].mean())
    return float(gap)


def classification_scores(predicted: list[str], confidence: list[float], gold: list[str],
                          labels: list[str]) -> dict[str, float]:
    """Accuracy, macro precision / recall / F1 over the declared labels (scikit-learn), and the
    expected calibration error of the predicted label's probability."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    if not (len(predicted) == len(confidence) == len(gold)):
        raise ValueError(f"{len(predicted)} predictions, {len(confidence)} confidences, {len(gold)} labels")
    precision, recall, f1, _ = precision_recall_fscore_support(gold, predicted, labels=labels, average="macro",
                                                               zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "f1_macro": float(f1), "precision_macro": float(precision), "recall_macro": float(recall),
        "ece": expected_calibration_error(confidence, [p == g for p, g in zip(predicted, gold)]),
    }


def confusion_matrix_figure(predicted: list[str], gold: list[str], labels: list[str]):
    """A matplotlib figure of the confusion matrix (rows: true label), for `mlflow.log_figure`."""
    import matplotlib

    matplotlib.use("Agg")
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay.from_predictions(gold, predicted, labels=labels, colorbar=False)
    display.ax_.set_title(f"confusion matrix ({len(gold)} examples)")
    display.figure_.tight_layout()
    return display.figure_
