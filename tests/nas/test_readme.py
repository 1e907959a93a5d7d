"""The README's Python example, run as a script on Ray: a user-written space, evaluator (its own
DataLoader and loop) and strategy end to end, resume after SIGKILL, and `nas show/export/train` on
the run it made."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray_helpers import REPO, Reaper, events, ray_env, read_journal, run_nas

README = REPO / "README.md"
USER_STRATEGY = '''

class HillClimber(nas.Strategy):
    """A user's strategy: random until a result is told, then a mutation of the best so far."""

    name = "hill-climber"

    def __init__(self, space, seed=0):
        super().__init__(space, seed)
        self.incumbent = None

    def _propose(self):
        if self.incumbent is None:
            return self.space.sample(self.rng)
        return self.space.mutate(self.incumbent[0], self.rng)

    def _on_result(self, trial_id, arch, score):
        if self.incumbent is None or score > self.incumbent[1]:
            self.incumbent = (arch, score)

    def _extra_state(self):
        return {"incumbent": None if self.incumbent is None else [self._arch_json(self.incumbent[0]),
                                                                  self.incumbent[1]]}

    def _load_extra_state(self, state):
        inc = state["incumbent"]
        self.incumbent = None if inc is None else (self._arch_from_json(inc[0]), inc[1])
'''


def readme_example() -> str:
    """The first python code block after the README's "## Python API" heading."""
    text = README.read_text()
    section = text[text.index("## Python API"):]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "no python example in the README's Python API section"
    return match.group(1)


def run_script(path: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(path)], cwd=path.parent, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_readme_example_runs_and_the_cli_reads_its_run(tmp_path: Path, ray_tmp: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    env = ray_env(ray_tmp, PYTHONPATH=str(REPO))
    done = run_script(script, env)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = tmp_path / "runs" / "readme-tiny"
    results = events(read_journal(run_dir), "result")
    assert sorted(r["trial"] for r in results) == [0, 1, 2, 3]
    assert all(r["status"] in ("ok", "cached") for r in results), results
    best = max((r for r in results if r["status"] == "ok"), key=lambda r: (r["score"], -r["trial"]))
    first = done.stdout.splitlines()[0]
    assert first.endswith(f" {best['trial']}") and f"{best['score']}" in first, done.stdout
    assert best["metrics"]["epochs_run"] == 2 and best["metrics"]["weights"], best  # trial.report per epoch
    config = (run_dir / "config.json").read_text()
    assert '"evaluator": "__main__.evaluate"' in config and "__main__.TinySpace" in config

    shown = run_nas(["show", str(run_dir), "--history"], env)
    assert shown.returncode == 0 and "4/4 trials done" in shown.stdout, shown.stdout
    assert "('residual'," in shown.stdout or "('conv'," in shown.stdout or "('highway'," in shown.stdout
    out = tmp_path / "export" / "tiny.py"
    exported = run_nas(["export", str(run_dir), "--best", "--out", str(out)], env)
    assert exported.returncode == 0, exported.stdout
    assert out.is_file() and out.with_suffix(".safetensors").is_file()
    assert "seed initialisation" not in out.read_text()  # the trial's trained weights were exported
    trained = run_nas(["train", "--run", str(run_dir), "--dataset", "digits", "--epochs", "1", "--data-limit", "200",
                       "--out", str(tmp_path / "retrain")], env)
    assert trained.returncode == 0, trained.stdout
    assert (tmp_path / "retrain" / "weights.safetensors").is_file()


@pytest.mark.slow
def test_user_strategy_run_resumes_after_sigkill(tmp_path: Path, ray_tmp: Path) -> None:
    source = readme_example().replace('if __name__ == "__main__":', USER_STRATEGY + '\n\nif __name__ == "__main__":')
    source = source.replace('strategy="evolution", trials=4,', 'strategy=HillClimber(SPACE, seed=3), trials=8,')
    source = source.replace("exp = nas.Experiment(space=TinySpace(),", "SPACE = TinySpace()\n    exp = nas.Experiment("
                            "space=SPACE,")
    assert "HillClimber(SPACE, seed=3)" in source and "space=SPACE," in source
    script = tmp_path / "climb.py"
    script.write_text(source)
    env = ray_env(ray_tmp, PYTHONPATH=str(REPO))
    run_dir = tmp_path / "runs" / "readme-tiny"
    with (tmp_path / "killed.log").open("w") as log:
        driver = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    reaper = Reaper()
    reaper.track_group(driver)
    reaper.track_temp_dir(ray_tmp)
    try:
        deadline = time.monotonic() + 240
        while True:
            reaper.refresh()
            journal = read_journal(run_dir)
            done = {e["trial"] for e in events(journal, "result")}
            pending = {e["trial"] for e in events(journal, "propose")} - done
            if 2 <= len(done) < 8 and pending:
                break
            assert driver.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "killed.log").read_text()
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)
        assert not reaper.kill_all(), "processes of the killed search survived"
    finally:
        reaper.kill_all()
    killed = read_journal(run_dir)
    resumed = run_script(script, env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    journal = read_journal(run_dir)
    assert journal[:len(killed)] == killed, "resuming rewrote journal events"
    results = events(journal, "result")
    assert sorted(r["trial"] for r in results) == list(range(8)), "a trial has no result or two"
    assert '"strategy_class": "__main__.HillClimber"' in (run_dir / "config.json").read_text()
    shown = run_nas(["show", str(run_dir)], env)
    assert shown.returncode == 0 and "8/8 trials done" in shown.stdout, shown.stdout
