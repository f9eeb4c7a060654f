"""Running the real `dripflow` command the way a user does, and reading back what it stored.

Two ways to run it, both through :func:`dripflow.cli.main.main` (the console-script entry point,
which turns every error into a one-line message):

* ``dripflow`` (fixture): in this process, with stdout/stderr captured — fast, for most tests;
* :func:`run_process`: the installed console script as a child process — slower, for the tests that
  must prove what reaches a user's terminal (exit code, no traceback, nothing wrapped).

Every run gets an explicit ``--database`` from the test; ``DRIPFLOW_DATABASE_URL`` points at a file
in the test's own directory, so a command that forgot the option can never touch ``./dripflow.db``
nor another test's database (the suite runs with ``pytest -n 2``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from dripflow.cli.main import main
from dripflow.store.database import make_engine, transaction

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEMO_YAML = (EXAMPLES / "demo.yaml").read_text(encoding="utf-8")
# The console script pip installed next to the interpreter running the tests (.venv/bin/dripflow).
SCRIPT = Path(sys.executable).with_name("dripflow")


@dataclass(frozen=True)
class Result:
    """What a user sees: the exit code and the two output streams."""

    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err

    def lines(self, stream: str = "output") -> list[str]:
        """The non-blank lines of ``out``, ``err`` or both."""
        text: str = getattr(self, stream)
        return [line for line in text.splitlines() if line.strip()]


Dripflow = Callable[..., Result]


def _guard_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "DRIPFLOW_DEBUG"}
    env["DRIPFLOW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'not-the-test-database.db'}"
    return env


@pytest.fixture
def dripflow(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Dripflow:
    """``dripflow(*args)`` runs the CLI in this process and returns its :class:`Result`."""
    monkeypatch.delenv("DRIPFLOW_DEBUG", raising=False)
    monkeypatch.setenv("DRIPFLOW_DATABASE_URL", _guard_env(tmp_path)["DRIPFLOW_DATABASE_URL"])
    monkeypatch.chdir(tmp_path)

    def run(*args: str | Path) -> Result:
        capsys.readouterr()
        with monkeypatch.context() as patch:
            patch.setattr(sys, "argv", ["dripflow", *map(str, args)])
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            else:
                code = 0
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_process(*args: str | Path, cwd: Path) -> Result:
    """Run the installed ``dripflow`` console script as a user would, in ``cwd``.

    ``COLUMNS`` is narrow on purpose: a message that rich wraps would no longer be one line.
    """
    assert SCRIPT.is_file(), f"{SCRIPT} is missing: install the project with `pip install -e .`"
    env = _guard_env(cwd)
    env["COLUMNS"] = "60"
    done = subprocess.run(
        [str(SCRIPT), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output, result.output
    assert "internal error" not in result.output, result.output  # a bug, not a message about input
    assert result.code != 70, result.output


@contextmanager
def store(url: str) -> Iterator[Session]:
    """A session on ``url`` to read what a command left there (committed at the end; engine disposed)."""
    engine = make_engine(url)
    try:
        with transaction(engine) as session:
            yield session
    finally:
        engine.dispose()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line of ``text`` containing ``needle``."""
    found = [number for number, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(found) == 1, f"{needle!r} is on lines {found}"
    return found[0]


@pytest.fixture
def demo_file(tmp_path: Path) -> Path:
    """A copy of examples/demo.yaml (workspace ``acme``) the test may edit."""
    return write(tmp_path / "acme.yaml", DEMO_YAML)
