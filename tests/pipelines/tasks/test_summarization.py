
from pipelines.tasks.summarization import (
    IGNORE_INDEX,
    build_prompt,
    collate,
    encode_for_training,
    generate_ids,
    generate_summaries,
)
from pipelines.batches import length_grouped_batches, padded_tokens
from tests.conftest import DIALOGUES

INSTRUCTION = "Summarize the following dialogue in one or two sentences."


def test_prompt_uses_the_chat_template_when_there_is_one(tiny_lm, tiny_lm_plain_dir):
    from pipelines.sources.models import load_lm

    _, tokenizer = tiny_lm
    prompt = build_prompt(tokenizer, INSTRUCTION, "A: hi")
    assert prompt == f"<|user|>{INSTRUCTION}\n\nA: hi<|end|><|assistant|>"
    _, plain, _ = load_lm(str(tiny_lm_plain_dir))
    assert build_prompt(plain, INSTRUCTION, "A: hi") == f"{INSTRUCTION}\n\nA: hi\n\nSummary:"


def test_loss_only_on_summary_and_end_token(tiny_lm):
    _, tokenizer = tiny_lm
    dialogue, summary = DIALOGUES[0]
    enc = encode_for_training(tokenizer, INSTRUCTION, dialogue, summary, max_len=512, max_target=64)
    prompt_len = len(tokenizer(build_prompt(tokenizer, INSTRUCTION, dialogue), add_special_tokens=False)["input_ids"])
    assert enc.labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    target = enc.labels[prompt_len:]
    assert target == enc.input_ids[prompt_len:]
    assert target[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(target[:-1]) == summary
    assert not enc.truncated


def test_truncation_cuts_the_dialogue_and_keeps_the_generation_prompt(tiny_lm):
    _, tokenizer = tiny_lm
    long_dialogue = "\n".join(d for d, _ in DIALOGUES) * 5
    enc = encode_for_training(tokenizer, INSTRUCTION, long_dialogue, "Short summary.", max_len=80, max_target=16)
    assert enc.truncated and len(enc.input_ids) <= 80
    assistant = tokenizer.convert_tokens_to_ids("<|assistant|>")
    n_target = sum(label != IGNORE_INDEX for label in enc.labels)
    assert enc.input_ids[-n_target - 1] == assistant  # the prompt still ends with the assistant turn


def test_collate_right_pads_without_loss_or_attention():
    from pipelines.tasks.summarization import Encoded

    batch = collate([Encoded([5, 6, 7], [IGNORE_INDEX, 6, 7], False), Encoded([8], [8], False)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_length_grouping_covers_every_example_once_and_reduces_padding():
    lengths = [((i * 37) % 101) + 1 for i in range(200)]
    batches = length_grouped_batches(lengths, batch_size=8, seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(200))
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    naive = sum(max(lengths[i] for i in range(s, min(s + 8, 200))) * len(range(s, min(s + 8, 200))) for s in range(0, 200, 8))
    assert padded < 0.8 * naive
    assert length_grouped_batches(lengths, 8, seed=3) == batches


def test_batched_generation_equals_one_at_a_time(tiny_lm):
    model, tokenizer = tiny_lm
    # Prompts of different lengths, so the batch really is left-padded.
    prompts = [tokenizer(build_prompt(tokenizer, INSTRUCTION, d), add_special_tokens=False)["input_ids"]
               for d, _ in DIALOGUES[:5]]
    prompts[0] = prompts[0] + prompts[0][:7]
    assert len({len(p) for p in prompts}) > 1
    batched = generate_ids(model, tokenizer, prompts, max_new_tokens=8, batch_size=4)
    single = [generate_ids(model, tokenizer, [p], max_new_tokens=8, batch_size=1)[0] for p in prompts]
    assert batched == single
    assert all(len(ids) > 0 for ids in batched)
    texts = generate_summaries(model, tokenizer, INSTRUCTION, [d for d, _ in DIALOGUES[:2]], 8, 2)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_predictions_carry_the_prefill_padding_share_the_cell_logs(tiny_lm):
    from types import SimpleNamespace

    from pipelines.sources.datasets import Example
    from pipelines.tasks.base import Fitted
    from pipelines.tasks.summarization import SummarizationTask

    model, tokenizer = tiny_lm
    spec = SimpleNamespace(generation=SimpleNamespace(instruction=INSTRUCTION, max_new_tokens=2, batch_size=2, num_beams=1),
                           train=SimpleNamespace(max_seq_len=512))
    examples = [Example(d, (s,), row) for row, (d, s) in enumerate(DIALOGUES[:3], 1)]
    predictions = SummarizationTask().predict(Fitted(model, tokenizer, 512), spec, examples)
    assert len(predictions.outputs) == 3
    assert 0 < predictions.scalars["prefill_padding_share"] < 0.5  # lengths differ a little, sorted into batches


def test_loss_at_target_positions_only_equals_the_models_own_loss(tiny_lm):
    import torch

    from pipelines.methods import LoraMethod, PromptMethod
    from pipelines.tasks.summarization import summary_loss

    model, tokenizer = tiny_lm
    batch = collate([encode_for_training(tokenizer, INSTRUCTION, d, s, 256, 32) for d, s in DIALOGUES[:4]],
                    tokenizer.pad_token_id)
    assert (batch["attention_mask"] == 0).any()  # really padded
    with torch.no_grad():
        torch.testing.assert_close(summary_loss(model, batch), model(**batch).loss)
        lora = LoraMethod(r=2).apply(model)
        torch.testing.assert_close(summary_loss(lora, batch), lora(**batch).loss)
    # Prompt tuning prepends virtual tokens: it keeps the model's own loss.
    from pipelines.sources.models import load_lm

    prompt = PromptMethod(num_virtual_tokens=3).apply(load_lm(str(model.config.name_or_path))[0])
    with torch.no_grad():
        torch.testing.assert_close(summary_loss(prompt, batch), prompt(**batch).loss)


def test_padded_batches_give_the_same_per_token_loss_as_one_at_a_time(tiny_lm):
    import torch

    from pipelines.tasks.summarization import summary_loss

    model, tokenizer = tiny_lm
    examples = [encode_for_training(tokenizer, INSTRUCTION, d, s, 256, 32) for d, s in DIALOGUES]
    lengths = [len(e.input_ids) for e in examples]
    assert len(set(lengths)) > 1
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        # One example at a time: the token-weighted mean of each example's mean loss.
        singles = [(summary_loss(model, collate([e], pad)).item(), sum(x != IGNORE_INDEX for x in e.labels[1:]))
                   for e in examples]
        expected = sum(loss * n for loss, n in singles) / sum(n for _, n in singles)
        for idx in length_grouped_batches(lengths, batch_size=3, seed=0):
            batch = collate([examples[i] for i in idx], pad)
            n = [singles[i][1] for i in idx]
            by_row = sum(singles[i][0] * k for i, k in zip(idx, n)) / sum(n)
            torch.testing.assert_close(summary_loss(model, batch).item(), by_row, rtol=1e-5, atol=1e-6)
        whole = collate(examples, pad)
        torch.testing.assert_close(summary_loss(model, whole).item(), expected, rtol=1e-5, atol=1e-6)


def test_padded_tokens_counts_every_slot_a_batch_fills():
    from pipelines.tasks.summarization import Encoded

    causal = [Encoded([1, 2, 3], [IGNORE_INDEX, 2, 3], False), Encoded([4], [4], False)]
    assert padded_tokens(causal) == 2 * 3 == collate(causal, pad_id=0)["input_ids"].numel()
    seq2seq = [Encoded([1, 2, 3], [7, 8], False, seq2seq=True), Encoded([4], [9], False, seq2seq=True)]
    assert padded_tokens(seq2seq) == 2 * 3 + 2 * 2
