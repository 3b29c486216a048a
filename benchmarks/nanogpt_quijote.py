"""karpathy/nanoGPT's character-level recipe on the project's Quijote split for a wall-clock
budget: the baseline arm of the from-scratch GPT benchmark (nanoGPT runs beside the project, as is).

    python benchmarks/nanogpt_quijote.py --minutes 15 --threads 2      # README's CPU shape
    python benchmarks/nanogpt_quijote.py --minutes 0.5 --threads 1     # smoke

nanoGPT is extracted at NANOGPT_COMMIT from the local mirror into OUT/nanoGPT, and its
`data/quijote_char` written in its format from `text_splits` of the book: train.bin = the train
part, val.bin = the **test** part (nanoGPT's printed val loss is on our test part), vocabulary =
every character of the book. A calibration run (not counted) measures ms/iter and one eval: the
iterations the budget allows after 20 evals set `lr_decay_iters`, a twentieth of them
`eval_interval`. Then `train.py config/train_shakespeare_char.py` runs with README's CPU overrides
(float32, no compile, dropout 0, eval_iters 20), `max_iters` huge, `always_save_checkpoint=True`,
and gets SIGINT when the budget ends. As in the project's `train`, the budget starts with the
training loop (nanoGPT's "using fused AdamW" line) and covers its evals and saves. The last
checkpoint is scored on the **whole** test part in non-overlapping blocks of block_size (every
character but the first), by nanoGPT's own `model.py` imported from the extracted folder.

Reading it: `test_bits_per_char` = mean nats per scored character / ln 2. The checkpoint is the
last eval's before the deadline (`checkpoint_iter`): up to `eval_interval` iterations at the end
train but are not scored. `chars_per_s` = iterations x batch_size x block_size over the times
nanoGPT logs for them (iterations holding an eval left out); `chars_per_s_wall` divides by the
whole budget. `nanogpt_mfu_printed` is nanoGPT's last printed figure: a running average (evals
included) against an A100's bf16 peak (312 TFLOP/s) printed to 0.01%, so ~0.01% on a CPU. For an
MFU here: `achieved_flops` (chars_per_s x `flops_per_char`, nanoGPT's `estimate_mfu` count: 6 x
non-embedding params + 12 x L x d x T) over `pipelines.efficiency.peak_flops` in float32, whose
count is the same up to LayerNorm weights.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import pickle
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from common import REPO, machine, write_result

from pipelines.tasks.language_modeling import text_splits

MIRROR = Path("/work/.mirror/karpathy+nanoGPT/repo")
NANOGPT_COMMIT = "3adf61e154c3fe3fca428ad6bc3818b27a3b8291"  # master, "Update README to mention nanochat"
QUIJOTE = (REPO / "../shared/data/spanish_quijote/quijote_train.txt").resolve()
CPU_SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12}  # README's CPU run
A100_BF16_PEAK = 312e12  # what nanoGPT's estimate_mfu divides by
EVALS = 20  # evals (and checkpoints) per run
ITER = re.compile(r"iter (\d+): loss ([\d.]+), time ([\d.]+)ms, mfu (-?[\d.]+)%")
STEP = re.compile(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
LOOP_STARTS = "using fused AdamW"


def extract(out_dir: Path, commit: str = NANOGPT_COMMIT) -> Path:
    """nanoGPT's files at `commit`, fresh, in out_dir/nanoGPT."""
    target = out_dir / "nanoGPT"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(["git", f"--git-dir={MIRROR}", "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def prepare_data(nano: Path, text_path: Path) -> dict:
    """data/quijote_char in nanoGPT's format: train.bin = train part, val.bin = test part."""
    text = Path(text_path).read_bytes().decode("utf-8")  # as the project reads a .txt
    train, validation, test = text_splits(text)
    chars = sorted(set(train + validation + test))
    stoi = {ch: i for i, ch in enumerate(chars)}
    folder = nano / "data" / "quijote_char"
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.bin", train), ("val.bin", test)):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(folder / name)
    meta = {"vocab_size": len(chars), "stoi": stoi, "itos": dict(enumerate(chars))}
    (folder / "meta.pkl").write_bytes(pickle.dumps(meta))
    return {"vocab_size": len(chars), "train_chars": len(train), "test_chars": len(test)}


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def run_train(nano: Path, overrides: dict, threads: int, seconds: float, log_path: Path) -> dict:
    """nanoGPT's train.py with the Shakespeare-char config and `overrides`, SIGINT `seconds` after
    its training loop starts (or to its end). Returns its log lines and the timings."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-u", "train.py", "config/train_shakespeare_char.py",
           *(f"--{key}={value}" for key, value in overrides.items())]
    launched = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=nano, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    log, loop_start, deadline, line = [], None, math.inf, ""
    while True:
        try:
            line = lines.get(timeout=max(0.01, min(deadline - time.perf_counter(), 600)))
        except queue.Empty:
            if time.perf_counter() < deadline:
                continue
            if log[-1].startswith("saving checkpoint"):  # let the save finish: wait for the next line
                line = lines.get(timeout=60)
                log.append(line or "")
            proc.send_signal(signal.SIGINT)
            break
        if line is None:
            break
        log.append(line)
        if loop_start is None and line.startswith(LOOP_STARTS):
            loop_start = time.perf_counter()
            deadline = loop_start + seconds
    stopped = time.perf_counter()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log_path.write_text("\n".join(log) + "\n")
    if loop_start is None:
        raise SystemExit(f"error: nanoGPT's train.py never reached its loop (exit {proc.returncode}); see {log_path}")
    return {"log": log, "startup_s": loop_start - launched, "loop_s": stopped - loop_start}


def parse_log(log: list[str], eval_interval: int) -> dict:
    """Iterations done, their logged times (eval iterations apart), nanoGPT's last MFU and val loss."""
    iters = [(int(m[1]), float(m[3]) / 1000, float(m[4])) for m in map(ITER.match, log) if m]
    steps = [(int(m[1]), float(m[3])) for m in map(STEP.match, log) if m]
    if not iters:
        raise SystemExit("error: nanoGPT logged no iteration")
    plain = [dt for it, dt, _ in iters if it % eval_interval != 0]
    return {"iterations": iters[-1][0] + 1, "train_seconds": sum(plain), "logged_iterations": len(plain),
            "ms_per_iter": 1000 * statistics.median(plain) if plain else None,
            "eval_iter_s": statistics.median([dt for it, dt, _ in iters if it % eval_interval == 0]),
            "nanogpt_mfu_printed": iters[-1][2] / 100, "last_val_loss_nats": steps[-1][1] if steps else None}


def calibrate(nano: Path, base: dict, threads: int, budget_s: float, out_dir: Path, n_iters: int = 30) -> dict:
    """A short nanoGPT run (not counted): ms/iter and one eval's cost give the iterations the budget
    allows with EVALS evals, hence lr_decay_iters and eval_interval."""
    overrides = {**base, "max_iters": n_iters, "eval_interval": 10**9, "always_save_checkpoint": False,
                 "out_dir": out_dir / "calibration"}
    run = run_train(nano, overrides, threads, math.inf, out_dir / "calibration.log")
    stats = parse_log(run["log"], 10**9)
    step_s = stats["ms_per_iter"] / 1000
    eval_s = max(0.0, stats["eval_iter_s"] - step_s)  # iteration 0's time holds the first eval
    iters = max(EVALS, int((budget_s - EVALS * eval_s) / step_s))
    return {"lr_decay_iters": iters, "eval_interval": max(1, iters // EVALS), "ms_per_iter": stats["ms_per_iter"],
            "eval_s": eval_s, "seconds": run["startup_s"] + run["loop_s"]}


def load_model(nano: Path, ckpt_path: Path):
    """nanoGPT's own GPT class (imported from the extracted folder) with the checkpoint's weights."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", nano / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ckpt = torch.load(ckpt_path, map_location="cpu")
    model = module.GPT(module.GPTConfig(**ckpt["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
    return model.eval(), ckpt["iter_num"]


@torch.no_grad()
def test_bits_per_char(model, val_bin: Path, batch: int = 64) -> tuple[float, int]:
    """Mean bits per character over the whole test part: non-overlapping blocks of block_size, each
    position predicting the next character from the block so far."""
    ids = torch.from_numpy(np.fromfile(val_bin, dtype=np.uint16).astype(np.int64))
    T, n = model.config.block_size, len(ids) - 1
    full = n // T
    chunks = [(ids[: full * T].view(full, T), ids[1 : full * T + 1].view(full, T))]
    if n > full * T:
        chunks.append((ids[full * T : n].unsqueeze(0), ids[full * T + 1 :].unsqueeze(0)))
    nats = 0.0
    for x_all, y_all in chunks:
        for i in range(0, len(x_all), batch):
            x, y = x_all[i : i + batch], y_all[i : i + batch]
            logits, _ = model(x, y)  # with targets, nanoGPT returns logits at every position
            nats += torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
    return nats / n / math.log(2), n


def run_nanogpt(minutes: float, out_dir: Path, *, shape: dict, threads: int = 2, text_path=QUIJOTE,
                lr_decay_iters: int | None = None, eval_interval: int | None = None) -> dict:
    """nanoGPT's char recipe on the Quijote split for `minutes` of training loop; see the module doc."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    nano = extract(out_dir)
    data = prepare_data(nano, Path(text_path))
    base = {"dataset": "quijote_char", "device": "cpu", "compile": False, "dtype": "float32", "dropout": 0.0,
            "eval_iters": 20, "log_interval": 1, **shape}
    calib = None
    if lr_decay_iters is None:
        calib = calibrate(nano, base, threads, minutes * 60, out_dir)
        lr_decay_iters = calib["lr_decay_iters"]
    eval_interval = eval_interval or max(1, lr_decay_iters // EVALS)
    overrides = {**base, "max_iters": 10**9, "lr_decay_iters": max(lr_decay_iters, 101),  # warmup_iters is 100
                 "eval_interval": eval_interval, "always_save_checkpoint": True, "out_dir": out_dir / "train"}
    run = run_train(nano, overrides, threads, minutes * 60, out_dir / "train.log")
    stats = parse_log(run["log"], eval_interval)
    if not (out_dir / "train" / "ckpt.pt").is_file():
        raise SystemExit(f"error: no checkpoint within the budget (eval_interval {eval_interval}); see train.log")
    torch.set_num_threads(threads)
    started = time.perf_counter()
    model, ckpt_iter = load_model(nano, out_dir / "train" / "ckpt.pt")
    bits, scored = test_bits_per_char(model, nano / "data" / "quijote_char" / "val.bin")
    chars_per_iter = shape["batch_size"] * shape["block_size"]
    chars_per_s = stats["logged_iterations"] * chars_per_iter / stats["train_seconds"]
    flops_per_char = model.estimate_mfu(1, 1.0) * A100_BF16_PEAK / shape["block_size"]  # one sequence per second
    return {"commit": NANOGPT_COMMIT, "shape": shape, "minutes": minutes, "threads": threads, **data,
            "lr_decay_iters": overrides["lr_decay_iters"], "eval_interval": eval_interval, "calibration": calib,
            "iterations": stats["iterations"], "checkpoint_iter": ckpt_iter,
            "tokens": stats["iterations"] * chars_per_iter,
            "chars_per_s": chars_per_s, "flops_per_char": flops_per_char, "achieved_flops": chars_per_s * flops_per_char,
            "chars_per_s_wall": stats["iterations"] * chars_per_iter / run["loop_s"],
            "ms_per_iter": stats["ms_per_iter"], "nanogpt_mfu_printed": stats["nanogpt_mfu_printed"],
            "nanogpt_val_bits_per_char": (stats["last_val_loss_nats"] or math.nan) / math.log(2),
            "test_bits_per_char": bits, "test_chars_scored": scored,
            "params": sum(p.numel() for p in model.parameters()), "params_non_embedding": model.get_num_params(),
            "startup_s": run["startup_s"], "loop_s": run["loop_s"], "eval_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="training-loop budget")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "nanogpt_quijote",
                        help="work folder: nanoGPT, its data, logs, checkpoints")
    for key, value in CPU_SHAPE.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=value)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr-decay-iters", type=int, help="skip the calibration run and use this")
    parser.add_argument("--eval-interval", type=int, help="default: lr_decay_iters / 20")
    parser.add_argument("--text", type=Path, default=QUIJOTE)
    args = parser.parse_args()
    shape = {key: getattr(args, key) for key in CPU_SHAPE}
    torch.set_num_threads(args.threads)
    before = machine()
    s = run_nanogpt(args.minutes, args.out, shape=shape, threads=args.threads, text_path=args.text,
                    lr_decay_iters=args.lr_decay_iters, eval_interval=args.eval_interval)
    s["machine"], s["load_avg_after"] = before, machine()["load_avg"]
    print(f"nanoGPT {s['commit'][:8]} {shape}, {s['minutes']} min x {s['threads']} thread(s): {s['iterations']} iters "
          f"(checkpoint {s['checkpoint_iter']}), {s['chars_per_s']:,.0f} chars/s, {s['test_bits_per_char']:.3f} "
          f"test bits/char, {s['params']:,} params, {s['achieved_flops'] / 1e9:.2f} GFLOP/s")
    write_result("nanogpt_quijote", s)


if __name__ == "__main__":
    main()
