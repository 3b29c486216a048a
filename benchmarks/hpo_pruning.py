"""What pruning saves: the same Optuna study run twice, with the spec's pruner and with none, and
the training steps each spent against the best value each found.

    python benchmarks/hpo_pruning.py experiments/hpo_dialogsum_lora.yaml            # hpo.n_trials each
    python benchmarks/hpo_pruning.py experiments/hpo_dialogsum_lora.yaml --n-trials 8

Both studies use the spec's sampler seed, so TPE's random start-up trials (the first 10) draw
the same configurations in both: the difference in steps is what the pruner cut. Studies go to
a fresh SQLite file under benchmarks/results/ and the runs to the usual tracking store. Writes
benchmarks/results/hpo_pruning_<spec name>.{md,png} (ignored by git).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna
import yaml
from optuna.trial import TrialState

from pipelines import hpo
from pipelines.config import load_spec
from pipelines.hpo_report import train_steps

RESULTS = Path(__file__).parent / "results"


def run_study(spec_path: str, study: str, storage: str, n_trials: int | None) -> float:
    started = time.perf_counter()
    argv = [spec_path, "--storage", storage, "--study", study] + (["--n-trials", str(n_trials)] if n_trials else [])
    code = hpo.main(argv)
    if code != 0:
        raise SystemExit(f"study {study} ended with exit code {code}")
    return time.perf_counter() - started


def best_so_far(trials, maximize: bool) -> tuple[list[int], list[float]]:
    """Cumulative training steps after each trial, and the best completed value up to then."""
    steps, best, xs, ys = 0, None, [], []
    for trial in sorted(trials, key=lambda t: t.number):
        steps += int(trial.user_attrs.get("train_steps", 0))
        if trial.state == TrialState.COMPLETE:
            best = trial.value if best is None else (max if maximize else min)(best, trial.value)
        if best is not None:
            xs.append(steps)
            ys.append(best)
    return xs, ys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment")
    parser.add_argument("--n-trials", type=int, default=None)
    args = parser.parse_args(argv)
    spec = load_spec(args.experiment)
    if spec.hpo is None or spec.hpo.pruner.type == "none":
        raise SystemExit("the spec needs an hpo section with a pruner to compare against none")
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    storage = f"sqlite:///{(RESULTS / f'hpo_pruning_{spec.name}_{stamp}.db').resolve()}"
    unpruned = spec.model_dump(mode="json")
    unpruned["hpo"]["pruner"] = {"type": "none"}
    names = {"pruned": f"{spec.name}-{spec.hpo.pruner.type}-{stamp}", "unpruned": f"{spec.name}-none-{stamp}"}
    with tempfile.TemporaryDirectory() as tmp:
        unpruned_path = Path(tmp) / f"{spec.name}_no_pruner.yaml"
        unpruned_path.write_text(yaml.safe_dump(unpruned, sort_keys=False))
        wall = {"pruned": run_study(args.experiment, names["pruned"], storage, args.n_trials),
                "unpruned": run_study(str(unpruned_path), names["unpruned"], storage, args.n_trials)}

    maximize = spec.hpo.direction == "maximize"
    metric = spec.hpo.metric
    lines = [f"# Pruning on {spec.name}", "", f"storage: {storage}", "",
             f"| study | pruner | trials | complete | pruned | failed | training steps | best {metric} | wall time |",
             "|---|---|---|---|---|---|---|---|---|"]
    curves = {}
    for kind, name in names.items():
        trials = optuna.load_study(study_name=name, storage=storage).trials
        states = [t.state for t in trials]
        values = [t.value for t in trials if t.state == TrialState.COMPLETE]
        best = (max if maximize else min)(values) if values else float("nan")
        pruner = spec.hpo.pruner.type if kind == "pruned" else "none"
        lines.append(f"| {name} | {pruner} | {len(trials)} | {states.count(TrialState.COMPLETE)} | "
                     f"{states.count(TrialState.PRUNED)} | {states.count(TrialState.FAIL)} | {train_steps(trials)} | "
                     f"{best:.4f} | {wall[kind] / 60:.1f} min |")
        curves[pruner] = best_so_far(trials, maximize)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (xs, ys) in curves.items():
        ax.step(xs, ys, where="post", marker="o", label=f"pruner: {label}")
    ax.set_xlabel("training steps spent by the study (cumulative)")
    ax.set_ylabel(f"best {metric} so far")
    ax.set_title(f"{spec.name}: what pruning saves")
    ax.legend()
    fig.tight_layout()
    figure = RESULTS / f"hpo_pruning_{spec.name}.png"
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    lines += ["", f"figure: {figure}", ""]
    (RESULTS / f"hpo_pruning_{spec.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
