"""How much of an eval split its train split already holds: exact duplicates, eval texts found
inside a train text, and eval texts that contain a train text.

Texts are compared after lower-casing and collapsing whitespace, and containment is whole words
only (" good film " is in " a good film . ", " goo " is not). A contained text must have at least
`MIN_CONTAINED_TOKENS` words: shorter ones (a word, a bigram) are found inside almost any longer
text by chance, so counting them would call every row of any set a leak. Measured on the local
SST-2 split: with no minimum, 99.9% of the 6,735 eval rows leak and 6 rows are left.

Containment is found with one Aho-Corasick automaton (pyahocorasick) per direction, built on the
first `PREFIX_CHARS` characters of the texts searched for; a prefix hit is then confirmed with a
`startswith` of the whole text. The automaton stays small for long texts (DialogSum dialogues),
and the cost is linear in the characters scanned, never one substring scan per pair of rows.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

MIN_CONTAINED_TOKENS = 4
PREFIX_CHARS = 48
WARN_SHARE = 0.01  # a grid warns when more than this share of an eval split leaks


def normalise(text: str) -> str:
    """Lower-cased, one space between words, a space at both ends (so matches are whole words)."""
    return " " + " ".join(text.lower().split()) + " "


@dataclass(frozen=True)
class Leakage:
    """Which eval rows (0-based indices into the eval texts) overlap the train split, and how."""

    eval_rows: int
    exact: frozenset[int]
    inside_train: frozenset[int]  # found inside a longer train text
    contains_train: frozenset[int]  # holds a shorter train text

    @property
    def leaking(self) -> frozenset[int]:
        return self.exact | self.inside_train | self.contains_train

    def shares(self) -> dict[str, float]:
        n = max(1, self.eval_rows)
        return {"exact_share": len(self.exact) / n, "inside_train_share": len(self.inside_train) / n,
                "contains_train_share": len(self.contains_train) / n, "leak_share": len(self.leaking) / n}


def _automaton(patterns: list[str], min_tokens: int):
    """An automaton over the prefixes of `patterns` of at least `min_tokens` words; each prefix maps
    to the indices of the patterns that start with it."""
    import ahocorasick

    by_prefix: dict[str, list[int]] = defaultdict(list)
    for i, pattern in enumerate(patterns):
        if pattern.count(" ") - 1 >= min_tokens:
            by_prefix[pattern[:PREFIX_CHARS]].append(i)
    automaton = ahocorasick.Automaton()
    for prefix, indices in by_prefix.items():
        automaton.add_word(prefix, (len(prefix), indices))
    if by_prefix:
        automaton.make_automaton()
    return automaton if by_prefix else None


def containments(patterns: list[str], texts: list[str], min_tokens: int = MIN_CONTAINED_TOKENS):
    """(indices of patterns found inside a longer text, indices of texts holding a shorter pattern),
    all normalised with `normalise`."""
    automaton = _automaton(patterns, min_tokens)
    found, holding = set(), set()
    if automaton is None:
        return found, holding
    for t, text in enumerate(texts):
        for end, (length, indices) in automaton.iter(text):
            start = end - length + 1
            for i in indices:
                pattern = patterns[i]
                if len(pattern) < len(text) and text.startswith(pattern, start):
                    found.add(i)
                    holding.add(t)
    return found, holding


def measure(train_texts: list[str], eval_texts: list[str], min_tokens: int = MIN_CONTAINED_TOKENS) -> Leakage:
    """The overlap of `eval_texts` with `train_texts` (raw texts; normalised here)."""
    train = [normalise(t) for t in train_texts]
    evaluation = [normalise(t) for t in eval_texts]
    seen = set(train)
    exact = {i for i, text in enumerate(evaluation) if text in seen}
    inside, _ = containments(evaluation, train, min_tokens)
    _, contains = containments(train, evaluation, min_tokens)
    return Leakage(len(evaluation), frozenset(exact), frozenset(inside), frozenset(contains))


def without_leaking(train: list, evaluation: list, name: str) -> list:
    """The eval examples (anything with a `.text`) that do not overlap the train examples."""
    leaking = measure([ex.text for ex in train], [ex.text for ex in evaluation]).leaking
    print(f"[data] {name}: left out {len(leaking)} of {len(evaluation)} eval rows that overlap train "
          "(exclude_leaking)", flush=True)
    return [ex for i, ex in enumerate(evaluation) if i not in leaking]


def describe(name: str, leakage: Leakage) -> str:
    """One line for the console: the shares, and a warning above `WARN_SHARE`."""
    s = leakage.shares()
    line = (f"[data] {name}: {s['leak_share']:.1%} of {leakage.eval_rows} eval rows overlap train "
            f"(exact {s['exact_share']:.1%}, inside a train text {s['inside_train_share']:.1%}, "
            f"containing one {s['contains_train_share']:.1%}; containment counts texts of "
            f"{MIN_CONTAINED_TOKENS}+ words)")
    if s["leak_share"] > WARN_SHARE:
        line += (f"\n[data] warning: {name}'s eval split leaks; its scores overstate unseen data. Set "
                 "`exclude_leaking: true` on the dataset to score only the rows that do not overlap")
    return line


def log_leakage(splits: dict) -> dict[str, Leakage]:
    """Measure every dataset's splits (name -> `Splits`), print it and log the shares as
    `leakage.<dataset>.<share>` metrics on the active MLflow run."""
    import mlflow

    measured = {}
    for name, found in splits.items():
        measured[name] = leakage = measure([ex.text for ex in found.train], [ex.text for ex in found.eval])
        print(describe(name, leakage), flush=True)
        mlflow.log_metrics({f"leakage.{name}.{k}": v for k, v in leakage.shares().items()})
        if leakage.shares()["leak_share"] > WARN_SHARE:
            mlflow.set_tag(f"leakage.{name}", "warning: the eval split overlaps train")
    return measured
