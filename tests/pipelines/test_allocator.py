"""The training entry points re-exec themselves with tcmalloc preloaded (`make` installs it)."""
import os
import subprocess
import sys
from pathlib import Path

from pipelines.allocator import tcmalloc_path

REPO = Path(__file__).parents[2]
PROBE = """
from pipelines.allocator import reexec_with_tcmalloc
if __name__ == "__main__":
    reexec_with_tcmalloc("allocator_probe")
    import sys
    print("tcmalloc" in open("/proc/self/maps").read(), sys.argv[1:])
"""


def probe(tmp_path, launcher: tuple[str, ...] = (), **env) -> subprocess.CompletedProcess:
    (tmp_path / "allocator_probe.py").write_text(PROBE)
    environ = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ADAPTLAB_ALLOCATOR")}
    environ |= {"PYTHONPATH": f"{tmp_path}:{REPO}", **env}
    return subprocess.run([sys.executable, *(launcher or ("-m",)), "allocator_probe", "a b", "--c"], capture_output=True, text=True,
                          env=environ, timeout=60, check=False)


def test_an_entry_point_runs_under_tcmalloc_with_its_arguments_unless_told_not_to(tmp_path):
    assert tcmalloc_path(), "libtcmalloc-minimal4 is missing: make setup installs it"
    assert probe(tmp_path).stdout.strip() == "True ['a b', '--c']"
    assert probe(tmp_path, ADAPTLAB_ALLOCATOR="system").stdout.strip() == "False ['a b', '--c']"


def test_mlprojects_launcher_preloads_it_before_the_entry_point_imports_anything(tmp_path):
    launched = probe(tmp_path, ("-m", "pipelines.allocator"))
    assert launched.stdout.strip() == "True ['a b', '--c']", launched.stderr
    unlaunched = probe(tmp_path, ("-m", "pipelines.allocator"), ADAPTLAB_ALLOCATOR="system")
    assert unlaunched.stdout.strip() == "False ['a b', '--c']", unlaunched.stderr


def test_an_unknown_allocator_is_refused_in_one_line(tmp_path):
    done = probe(tmp_path, ADAPTLAB_ALLOCATOR="jemalloc")
    assert done.returncode != 0
    assert done.stderr.strip() == "error: ADAPTLAB_ALLOCATOR='jemalloc': expected tcmalloc (the default) or system"
