"""The from-scratch GPT on Don Quijote against everything it must beat, in one run on one machine:
the baselines (character unigram and bigram, gzip -9 and xz -9 increments), karpathy/nanoGPT's
char-level recipe on the same parts for the same wall-clock budget, and the seed's trap in
numbers (a word-level vocabulary's token accuracy beside its bits per character, unknown words
charged). Every arm is the project's `peft_compare` on `experiments/quijote_gpt.yaml` with
overrides, except nanoGPT, which runs as is beside it (`benchmarks/nanogpt_quijote.py`).

    python benchmarks/quijote_gpt.py                     # 12-minute budget for the two main arms
    python benchmarks/quijote_gpt.py --minutes 20 --short-minutes 6

Arms, one after another (never two at once on these 2 cores):
1. gpt-bpe: the spec (byte-level BPE 4096, 4 x 256 llama, context 256, bf16 autocast) for --minutes,
   max_steps sized to the budget so that the cosine schedule ends with it.
2. nanoGPT: its char recipe at its README's CPU shape (4 x 128, block 64, batch 12, float32), --minutes.
3. gpt-char at nanoGPT's shape, float32, for --short-minutes: characters per second, same shape.
4. gpt-word: the seed's 5,000-word vocabulary + <unk>, for --short-minutes.
Bits per character are always on the whole test part (the book's last 5%). MFU is against the
float32 matmul peak measured here (`pipelines.efficiency.peak_flops`), as nanoGPT prints it.
Results: benchmarks/results/quijote_gpt.json and .md.
"""
from __future__ import annotations

import argparse
import json
import time

import mlflow
import torch
from common import REPO, machine, write_result
from nanogpt_quijote import CPU_SHAPE, run_nanogpt

from pipelines.compare import run
from pipelines.config import load_spec
from pipelines.efficiency import peak_flops
from pipelines.report import to_markdown
from pipelines.runtime import configure_threads

SPEC = REPO / "experiments" / "quijote_gpt.yaml"
RESULTS = REPO / "benchmarks" / "results" / "quijote_gpt"
KEEP = ("bits_per_char", "bits_per_byte", "perplexity", "token_accuracy", "unknown_token_share", "train_perplexity",
        "validation_perplexity", "train_bits_per_char", "validation_bits_per_char", "overfitting_ratio",
        "generalisation_gap", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "generation_ms_per_token",
        "generation_ms_per_token_std", "train_tokens_per_s", "train_chars_per_s", "chars_per_token",
        "train_flops_per_token", "train_steps", "train_time_s", "best_step", "peak_rss_mb", "wall_time_s",
        "params_trainable", "saved_mb")


def arm(name: str, overrides: dict, tokens_per_s_guess: float, minutes: float) -> dict:
    """One `peft_compare` of the spec with `overrides`; its cell's figures, MFU against float32."""
    batch, seq = overrides.get("train.batch_size", 16), overrides.get("train.max_seq_len", 256)
    steps = int(tokens_per_s_guess * minutes * 60 / (batch * seq))
    settings = {"models.0.name": name, "train.max_minutes": minutes, "train.max_steps": steps,
                "train.eval_every_steps": max(50, steps // 8), "registry.promote": False, **overrides}
    spec = load_spec(SPEC, settings)
    started = time.perf_counter()
    with mlflow.start_run(run_name=f"benchmark-{name}"):
        cells, table, _ = run(spec, str(SPEC))
    cell = cells[0]
    if cell.status != "FINISHED":
        raise SystemExit(f"error: arm {name} failed: {cell.error}")
    figures = {k: cell.metrics[k] for k in KEEP if k in cell.metrics}
    flops = cell.metrics["train_tokens_per_s"] * cell.metrics["train_flops_per_token"]
    figures.update(arm=name, overrides=settings, wall_s=time.perf_counter() - started, achieved_flops=flops,
                   mfu_vs_float32=flops / peak_flops(torch.device("cpu"), torch.float32), run_id=cell.run_id)
    print(f"[{name}] {figures['bits_per_char']:.3f} bits/char, {figures['train_chars_per_s']:,.0f} chars/s, "
          f"MFU {100 * figures['mfu_vs_float32']:.0f}% of float32", flush=True)
    (RESULTS / f"{name}.md").write_text(to_markdown(table) + "\n")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=12.0, help="budget of the gpt-bpe and nanoGPT arms")
    parser.add_argument("--short-minutes", type=float, default=4.0, help="budget of the gpt-char and gpt-word arms")
    parser.add_argument("--skip", nargs="*", default=[], help="arms to leave out (gpt-bpe nanogpt gpt-char gpt-word)")
    args = parser.parse_args()
    configure_threads()
    RESULTS.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{RESULTS / 'mlflow.db'}")
    mlflow.set_experiment("quijote_gpt_benchmark")
    result = {"machine": machine(), "float32_peak_flops": peak_flops(torch.device("cpu"), torch.float32),
              "bfloat16_peak_flops": peak_flops(torch.device("cpu"), torch.bfloat16), "arms": {}}
    nano_shape = {"models.0.scratch.layers": CPU_SHAPE["n_layer"], "models.0.scratch.heads": CPU_SHAPE["n_head"],
                  "models.0.scratch.width": CPU_SHAPE["n_embd"], "models.0.scratch.context_length": CPU_SHAPE["block_size"],
                  "train.max_seq_len": CPU_SHAPE["block_size"], "train.batch_size": CPU_SHAPE["batch_size"],
                  "models.0.scratch.tokenizer.kind": "char", "models.0.scratch.tokenizer.vocab_size": 128,
                  "train.precision": "float32", "generation.batch_size": 16}
    plan = [
        ("gpt-bpe", lambda: arm("gpt-bpe", {}, 7000, args.minutes)),
        ("nanogpt", lambda: run_nanogpt(args.minutes, RESULTS / "nanogpt", shape=CPU_SHAPE, threads=2)),
        ("gpt-char", lambda: arm("gpt-char", nano_shape, 40000, args.short_minutes)),
        ("gpt-word", lambda: arm("gpt-word", {"models.0.scratch.tokenizer.kind": "word",
                                              "models.0.scratch.tokenizer.vocab_size": 5004}, 7000, args.short_minutes)),
    ]
    for name, go in plan:
        if name in args.skip:
            continue
        result["arms"][name] = go()
        (RESULTS / "partial.json").write_text(json.dumps(result, indent=1, default=str))
    result["load_avg_after"] = machine()["load_avg"]
    write_result("quijote_gpt", result)


if __name__ == "__main__":
    main()
