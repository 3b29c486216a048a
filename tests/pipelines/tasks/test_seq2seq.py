"""The encoder-decoder path (T5, BART) on tiny random models: encoding, training, generation,
every PEFT method, and a full peft_compare cell."""
import pytest
import torch

from pipelines.config import TrainSettings
from pipelines.methods import FullMethod, Ia3Method, LoraMethod, PrefixMethod, PromptMethod
from pipelines.sources.models import is_seq2seq, load_lm
from pipelines.tasks.summarization import IGNORE_INDEX, collate, encode_for_training, generate_ids, generate_summaries, summary_loss, target_tokens
from pipelines.train import eval_loss, train
from tests.conftest import DIALOGUES

INSTRUCTION = "Summarize the following dialogue in one or two sentences."
CPU = torch.device("cpu")


def test_seq2seq_checkpoints_load_as_encoder_decoders(tiny_seq2seq_dir):
    model, _, _ = load_lm(str(tiny_seq2seq_dir))
    assert is_seq2seq(model) and type(model).__name__.endswith("ForConditionalGeneration")


def test_encoding_puts_the_summary_in_the_decoder_labels(tiny_seq2seq_dir):
    _, tokenizer, _ = load_lm(str(tiny_seq2seq_dir))
    dialogue, summary = DIALOGUES[0]
    enc = encode_for_training(tokenizer, INSTRUCTION, dialogue, summary, 512, 64, seq2seq=True)
    assert tokenizer.decode(enc.input_ids[:-1]) == f"{INSTRUCTION}\n\n{dialogue}"
    assert tokenizer.decode(enc.labels[:-1]) == summary and enc.labels[-1] == tokenizer.eos_token_id
    assert enc.n_tokens == len(enc.input_ids) + len(enc.labels)
    short = encode_for_training(tokenizer, INSTRUCTION, DIALOGUES[1][0], "Ok.", 512, 64, seq2seq=True)
    batch = collate([enc, short], tokenizer.pad_token_id)
    assert batch["labels"].shape[1] == len(enc.labels) != batch["input_ids"].shape[1]
    assert batch["labels"][1, len(short.labels):].eq(IGNORE_INDEX).all()
    truncated = encode_for_training(tokenizer, INSTRUCTION, dialogue * 20, summary, 40, 64, seq2seq=True)
    assert truncated.truncated and len(truncated.input_ids) == 40


@pytest.mark.parametrize("method", [FullMethod(learning_rate=3e-3), LoraMethod(r=2, learning_rate=1e-2),
                                    Ia3Method(learning_rate=1e-2), PrefixMethod(num_virtual_tokens=4),
                                    PromptMethod(num_virtual_tokens=4)], ids=lambda m: m.name)
def test_every_method_trains_a_seq2seq_model(method, tiny_seq2seq_dir):
    model, tokenizer, _ = load_lm(str(tiny_seq2seq_dir))
    torch.manual_seed(0)
    model = method.apply(model)
    data = [encode_for_training(tokenizer, INSTRUCTION, d, s, 256, 32, seq2seq=True) for d, s in DIALOGUES]
    before = eval_loss(model, data, collate=collate, loss=summary_loss, weight=target_tokens, batch_size=4, pad_id=tokenizer.pad_token_id, device=CPU)
    train(model, data, TrainSettings(max_steps=12, batch_size=4), collate=collate, loss=summary_loss, learning_rate=method.learning_rate,
          weight_decay=0.0, seed=0, pad_id=tokenizer.pad_token_id, device=CPU)
    assert eval_loss(model, data, collate=collate, loss=summary_loss, weight=target_tokens, batch_size=4, pad_id=tokenizer.pad_token_id, device=CPU) < before
    summaries = generate_summaries(model, tokenizer, INSTRUCTION, [d for d, _ in DIALOGUES[:3]], 6, 2)
    assert len(summaries) == 3 and all(isinstance(s, str) for s in summaries)


def test_seq2seq_batched_generation_equals_one_at_a_time(tiny_seq2seq_dir):
    model, tokenizer, _ = load_lm(str(tiny_seq2seq_dir))
    prompts = [tokenizer(f"{INSTRUCTION}\n\n{d}", add_special_tokens=False)["input_ids"] for d, _ in DIALOGUES[:5]]
    batched = generate_ids(model, tokenizer, prompts, max_new_tokens=6, batch_size=4)
    single = [generate_ids(model, tokenizer, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert batched == single and all(batched)
