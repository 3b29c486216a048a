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
