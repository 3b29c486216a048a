import math

import pytest

from pipelines.metrics import bleu, rouge


def test_rouge_hand_computed():
    # pred "the cat sat" vs ref "the cat sat down": unigram P=3/3, R=3/4 -> F=6/7;
    # bigrams 2/2 and 2/3 -> F=4/5; LCS = 3 -> same as ROUGE-1.
    scores = rouge(["the cat sat"], [["the cat sat down"]])
    assert scores["rouge1"] == pytest.approx(6 / 7)
    assert scores["rouge2"] == pytest.approx(4 / 5)
    assert scores["rougeL"] == pytest.approx(6 / 7)


def test_rouge_uses_stemming_and_averages():
    scores = rouge(["cats running", "nothing shared"], [["cat runs"], ["completely different"]])
    assert scores["rouge1"] == pytest.approx(0.5)  # (1.0 + 0.0) / 2: stems match


def test_rouge_scores_against_the_best_reference():
    single = rouge(["the cat sat"], [["a dog barked"]])["rouge1"]
    multi = rouge(["the cat sat"], [["a dog barked", "the cat sat"]])["rouge1"]
    assert single == 0.0 and multi == pytest.approx(1.0)


def test_bleu_hand_computed():
    # 4-word hypothesis against itself: all precisions 100, brevity penalty 1.
    result = bleu(["the cat sat down"], [["the cat sat down"]])
    assert result["bleu"] == pytest.approx(100.0)
    # "the cat sat" vs "the cat sat down": p1=3/3, p2=2/2, p3=1/1, p4=0/0 -> sacrebleu smooths;
    # check the n-gram precisions, which are plain counts.
    partial = bleu(["the cat the cat"], [["the cat sat down"]])
    assert partial["precision_1"] == pytest.approx(100 * 2 / 4)  # clipped: 'the' x1, 'cat' x1
    assert partial["precision_2"] == pytest.approx(100 * 1 / 3)


def test_bleu_accepts_uneven_reference_counts():
    result = bleu(["a b c d", "e f g h"], [["a b c d"], ["x y z w", "e f g h"]])
    assert result["bleu"] == pytest.approx(100.0)
    assert not math.isnan(result["precision_4"])


def test_classification_scores_against_hand_computed_values():
    from pipelines.metrics import classification_scores

    gold = ["pos", "pos", "pos", "neg"]
    predicted = ["pos", "neg", "pos", "neg"]
    scores = classification_scores(predicted, [0.9, 0.6, 0.8, 0.7], gold, ["neg", "pos"])
    # neg: precision 1/2, recall 1/1, F1 2/3; pos: precision 2/2, recall 2/3, F1 4/5.
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["precision_macro"] == pytest.approx((0.5 + 1.0) / 2)
    assert scores["recall_macro"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert scores["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_expected_calibration_error_by_hand():
    from pipelines.metrics import expected_calibration_error

    # Bin (0.8, 0.9]: confidences 0.9, 0.9, all right -> gap 0.1; bin (0.5, 0.6]: 0.6 wrong -> gap 0.6.
    assert expected_calibration_error([0.9, 0.9, 0.6], [True, True, False]) == pytest.approx(2 / 3 * 0.1 + 1 / 3 * 0.6)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == pytest.approx(0.0)


def test_confusion_matrix_counts_rows_as_true_labels():
    from pipelines.metrics import confusion_matrix_figure

    figure = confusion_matrix_figure(["pos", "neg", "pos"], ["pos", "pos", "neg"], ["neg", "pos"])
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["0", "1", "1", "1"]  # neg->neg 0, neg->pos 1, pos->neg 1, pos->pos 1
