"""Run `peft_compare` on a spec, time it end to end, and print the figures an issue asks for.

    python benchmarks/timed_compare.py experiments/dialogsum_demo.yaml
    python benchmarks/timed_compare.py experiments/dialogsum_1k.yaml

Writes benchmarks/results/<spec name>.md (ignored by git) with the table and the verdicts.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlflow

from pipelines.compare import run
from pipelines.config import load_spec
from pipelines.report import to_markdown
from pipelines.tracking import setup_tracking


def main(spec_path: str) -> int:
    setup_tracking()
    spec = load_spec(spec_path)
    started = time.perf_counter()
    with mlflow.start_run(run_name=f"benchmark-{spec.name}"):
        cells, table, promotion = run(spec, spec_path)
    total = time.perf_counter() - started
    metric = spec.registry.metric
    by_method = {c.method: c.metrics.get(metric) for c in cells if c.status == "FINISHED"}
    lines = [f"# {spec.name}", "", f"total wall time: {total / 60:.1f} min ({total:.0f} s)", ""]
    base = by_method.get("base")
    for method, value in by_method.items():
        if base is not None and method != "base" and value is not None:
            better = value > base if spec.registry.greater_is_better else value < base
            verdict = "beats" if better else "does NOT beat"
            lines.append(f"- {method} {metric} {value:.4f} {verdict} base {base:.4f}")
    if promotion:
        lines.append(f"- registered v{promotion.version} as @{promotion.alias}: {promotion.reason}")
    lines += ["", to_markdown(table), ""]
    out = Path(__file__).parent / "results" / f"{spec.name}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
