"""The project's own checks: ruff, mypy --strict and hadolint are clean."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import REPO


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    out = run(sys.executable, "-m", "ruff", "check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean() -> None:
    out = run(sys.executable, "-m", "mypy")
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(REPO / ".venv" / "bin" / "hadolint")
    out = run(hadolint, "Dockerfile")
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_installs_like_the_readme() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    readme = (REPO / "README.md").read_text()
    assert "pip install --no-cache-dir ." in dockerfile
    assert "pip install ." in readme
    assert 'ENTRYPOINT ["newsbot"]' in dockerfile and 'CMD ["run"]' in dockerfile
    assert "USER 10001" in dockerfile and "HEALTHCHECK" in dockerfile and 'VOLUME ["/data"]' in dockerfile


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = readme.split("```sh\n")
    run_command, test_command = blocks[1].split("\n")[0], blocks[2].split("\n")[0]
    assert "newsbot run" in run_command and "pip install ." in run_command
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test_command
