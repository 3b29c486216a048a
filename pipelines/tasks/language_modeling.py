"""Causal language modelling on plain text or on a text field: packed fixed-length blocks (loss on
every token), or prompt + response rows (loss on the response only). A base model comes from any
source, or is built from a config with its own tokenizer trained on the train part (`scratch`).

Scores (`lm_scoring`), from teacher forcing, never with label smoothing, on the test part (and on
the validation part and as much training text, to show memorisation):
- perplexity, exp of the mean nats per scored token;
- bits per byte: total nats / (ln 2 x UTF-8 bytes of the text the scored tokens cover), the
  figure that stays comparable across tokenizers; bits per character beside it. Both pay for
  the spelling of unknown tokens, so a word-level vocabulary cannot flatter itself;
- next-token accuracy, with the share of unknown tokens beside it;
and from greedy continuations of fixed held-out windows: BLEU-1..4 against the true
continuation, generation latency per token (mean, std) and tokens/s. At every validation, the
model continues fixed prompts (`sample_prompts`), logged as a table.

A plain-text file is one document, split contiguously (`text_splits`): the last 5% is the test
part (the eval split), the 5% before it the validation part (scored during training). On such a
split the grid also reports the baselines a model must beat (`pipelines/baselines.py`).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import PlatformError
from pipelines.sources.datasets import Example, Splits, load_splits, locate, read_ref
from pipelines.sources.models import load_lm
from pipelines.sources.readers import PLAIN_TEXT_FIELD
from pipelines.tasks.base import Fitted, Predictions, Score
from pipelines.tasks.lm_blocks import Block, pack, prompt_response, text_splits
from pipelines.tasks.lm_scoring import continuation_scores, samples, teacher_forced, windows
from pipelines.tasks.summarization import IGNORE_INDEX, collate, summary_loss, target_tokens
from pipelines.tasks.tokenizer_stats import tokenizer_stats

SAMPLE_PROMPTS = ["En un lugar de la Mancha", "En el año 1492,", "Durante la Edad Media,"]
PARAGRAPHS_FOR_STATISTICS = 2000


class LanguageModelingSettings(BaseModel):
    """The spec's `language_modeling` section."""

    model_config = ConfigDict(extra="forbid")

    response_field: str | None = Field(
        None, description="rows are prompt (text_field) + response; the loss covers the response only")
    windows: int = Field(100, ge=1, description="held-out windows continued greedily for BLEU and latency")
    prompt_tokens: int = Field(64, ge=1, description="tokens of a window given as the prompt")
    continuation_tokens: int = Field(64, ge=1, description="tokens generated and compared with the true ones")
    sample_prompts: list[str] = Field(
        default_factory=lambda: list(SAMPLE_PROMPTS),
        description="prompts the model continues greedily at every validation, logged as a table (none: [])")
    sample_tokens: int = Field(48, ge=1, description="tokens generated per sample prompt")


class LanguageModelingTask:
    """Next-token prediction on text; scored in bits per byte and perplexity; served as a text
    generator by `registry/text_generator.py`."""

    name = "language_modeling"
    scores = (Score("bits_per_byte", "bits/byte", greater_is_better=False, points=None),
              Score("perplexity", "perplexity", greater_is_better=False, points=None),
              Score("bits_per_char", "bits/char", greater_is_better=False, points=None),
              Score("token_accuracy", "next-token acc."),
              *(Score(f"bleu_{n}", f"BLEU-{n}", points=1.0) for n in range(1, 5)),
              Score("eval_loss", "eval loss", greater_is_better=False, points=None))
    default_metric = "bits_per_byte"
    validation_scores = ("bits_per_byte", "perplexity", "token_accuracy")
    registered_model_name = "text-generator"
    input_column = "prompt"
    servable = "text_generator"
    served_output = "continuation"
    target_is_label = False

    def check_spec(self, spec) -> None:
        return None

    def load_splits(self, dataset, spec) -> Splits:
        if dataset.eval is not None or not locate(dataset.train).lower().endswith(".txt"):
            # Rows: the text field, and the response field when the loss covers only that.
            fields = {"target_field": spec.language_modeling.response_field or dataset.text_field}
            return load_splits(dataset.model_copy(update=fields), spec.seed)
        rows, source = read_ref(dataset.train, f"dataset '{dataset.name}' train")
        train, validation, test = text_splits(rows[0][PLAIN_TEXT_FIELD])
        part = lambda text, row: [Example(text=text, references=("",), row=row)]
        return Splits(part(train, 1), part(test, 3), validation=part(validation, 2),
                      sources={"train": f"{source} (first 90%)", "validation": f"{source} (5% before the test part)",
                               "eval": f"{source} (last 5%: the test part)"})

    def describe_splits(self, splits: Splits) -> str:
        return f", {sum(len(ex.text) for ex in splits.train):,} train characters"

    def reference_scores(self, splits: Splits) -> dict[str, dict[str, float]]:
        """The baselines in bits per character on the test part, for a book split in parts (rows
        are no one text, and have none)."""
        if splits.validation is None or len(splits.train) != 1 or len(splits.eval) != 1:
            return {}
        from pipelines.baselines import reference_bits_per_char

        figures = reference_bits_per_char(splits.train[0].text, splits.eval[0].text)
        return {name: {"bits_per_char": value} for name, value in figures.items()}

    def load(self, model_src, splits: Splits, spec, device, load_kwargs: dict) -> Fitted:
        unknown_cost, logged = None, {}
        if model_src.scratch is not None:  # built from its config, its tokenizer trained on the train part
            from pipelines.sources.scratch import build_scratch_lm, tokenizer_logged

            model, tokenizer, trained = build_scratch_lm(model_src.scratch, [ex.text for ex in splits.train],
                                                         seed=spec.seed, device=device)
            unknown_cost = trained.spelling.nats if trained.spelling is not None else None
            logged = tokenizer_logged(trained.record)
        else:
            model, tokenizer, _ = load_lm(model_src.source, device=device, **load_kwargs)
        # Which file a part came from, for the error of a part shorter than one block.
        parts = {id(splits.train): "train", id(splits.eval): "eval", id(splits.validation): "validation"}
        named = {key: splits.sources.get(split, split) for key, split in parts.items()}
        context = {"settings": spec.language_modeling, "named": named, "unknown_cost": unknown_cost,
                   "splits": splits, "train_ids": id(splits.train), "batch_size": spec.train.batch_size}
        return Fitted(model, tokenizer, spec.train.max_seq_len, context, logged=logged)

    def train_statistics(self, fitted: Fitted, examples: list[Example]) -> dict[str, float]:
        """How the tokenizer cuts the train part, paragraph by paragraph (a sample of them)."""
        paragraphs = [p for ex in examples for p in ex.text.split("\n\n") if p.strip()][:PARAGRAPHS_FOR_STATISTICS]
        stats = tokenizer_stats(fitted.tokenizer, paragraphs)
        return {"tokens_per_paragraph" if k == "tokens_per_example" else k: v for k, v in stats.items()}

    def encode(self, fitted: Fitted, spec, examples: list[Example]) -> list[Block]:
        settings: LanguageModelingSettings = fitted.context["settings"]
        if settings.response_field:
            return [prompt_response(fitted.tokenizer, ex.text, ex.references[0], fitted.max_len) for ex in examples]
        source = fitted.context["named"].get(id(examples), f"{len(examples)} held-out document(s)")
        training = id(examples) == fitted.context["train_ids"]
        return pack(fitted.tokenizer, [ex.text for ex in examples], fitted.max_len, source,
                    min_blocks=fitted.context["batch_size"] if training else 1,
                    unknown_cost=fitted.context["unknown_cost"])

    collate = staticmethod(collate)
    loss = staticmethod(summary_loss)  # causal cross-entropy at the scored positions only
    loss_weight = staticmethod(target_tokens)

    def head_share(self, model, encoded: list[Block]) -> float:
        targets = sum(sum(label != IGNORE_INDEX for label in b.labels[1:]) for b in encoded)
        return targets / max(1, sum(b.n_tokens for b in encoded))

    def predict(self, fitted: Fitted, spec, examples: list[Example], progress=None,
                validating: bool = False) -> Predictions:
        settings: LanguageModelingSettings = fitted.context["settings"]
        blocks = self.encode(fitted, spec, examples)
        batch = spec.eval.scoring_batch(spec.generation)
        scalars = teacher_forced(fitted.model, blocks, batch, fitted.tokenizer.pad_token_id)
        if validating:
            written = samples(fitted.model, fitted.tokenizer, settings.sample_prompts, settings.sample_tokens)
            return Predictions(written, {"prompt": list(settings.sample_prompts)}, scalars=scalars)
        scalars.update(self._other_parts(fitted, spec, blocks, batch))
        pairs = windows(blocks, settings)
        hypotheses, references, generation = continuation_scores(fitted.model, fitted.tokenizer, pairs,
                                                                 spec.generation.batch_size)
        prompts = [fitted.tokenizer.decode(p) for p, _ in pairs]
        return Predictions(hypotheses, {"prompt": prompts, "reference": references}, {**scalars, **generation})

    def _other_parts(self, fitted: Fitted, spec, test_blocks: list[Block], batch: int) -> dict[str, float]:
        """Perplexity and bits per character of the validation part and of as much training text
        as the test part holds (evenly spaced blocks): far below the test part's, memorised."""
        splits: Splits = fitted.context["splits"]
        parts = {"train": self.encode(fitted, spec, splits.train)}
        parts["train"] = parts["train"][:: max(1, len(parts["train"]) // max(1, len(test_blocks)))][: len(test_blocks)]
        if splits.validation:
            parts["validation"] = self.encode(fitted, spec, splits.validation)
        out = {}
        for part, blocks in parts.items():
            figures = teacher_forced(fitted.model, blocks, batch, fitted.tokenizer.pad_token_id)
            out.update({f"{part}_{k}": figures[k] for k in ("perplexity", "bits_per_char", "bits_per_byte",
                                                           "token_accuracy")})
        return out

    def score(self, fitted: Fitted, predictions: Predictions, examples: list[Example]) -> dict[str, float]:
        keep = ("perplexity", "bits_per_byte", "bits_per_char", "token_accuracy", "unknown_token_share")
        return {k: v for k, v in predictions.scalars.items() if k in keep}

    def prediction_table(self, examples: list[Example], predictions: Predictions) -> dict[str, list]:
        return {**{k: v for k, v in predictions.extras.items() if k in ("prompt", "reference")},
                "continuation": predictions.outputs}

    def figures(self, fitted: Fitted, predictions: Predictions, examples: list[Example]) -> dict:
        return {}

    def servable_kwargs(self, fitted: Fitted, spec) -> dict:
        settings: LanguageModelingSettings = fitted.context["settings"]
        # The served default must fit the model beside at least one prompt token (a scratch GPT's
        # context can be as short as the continuation).
        context = getattr(fitted.model.config, "max_position_embeddings", None)
        new_tokens = min(settings.continuation_tokens, context - 1) if context else settings.continuation_tokens
        return {"max_new_tokens": new_tokens, "max_prompt_tokens": spec.train.max_seq_len}

    def served_examples(self, examples, config: dict, label_map, drop_labels, data: str) -> list[Example]:
        # Bits per byte and perplexity need the model's logits, which a served generator does not give.
        raise PlatformError("evaluate scores what a model serves; a language model is scored in bits per byte by "
                            "peft_compare (a spec with task: language_modeling), which reads its logits")

    def score_served(self, out, examples: list[Example], config: dict):
        raise NotImplementedError  # served_examples refuses first
