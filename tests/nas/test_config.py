"""nas.config: one resolved configuration (every default stored), config files, `nas search --config`
round trips, budget extension, and the import graph of the package (no cycle)."""

from __future__ import annotations

import ast
import json
from dataclasses import fields
from pathlib import Path

import networkx as nx
import pytest
from datapaths import NB201_TABLE

from nas.cli import main
from nas.config import SCHEMA_VERSION, ConfigError, load_config_file, resolve_config
from nas.engine import build_source
from nas.journal import ConfigMismatch
from nas.settings import ADDED_LATER
from nas.trainer import TrainConfig
from search_spaces.errors import InputError

REPO = Path(__file__).resolve().parents[2]
needs_table = pytest.mark.skipif(not NB201_TABLE.is_file(), reason="NAS-Bench-201 table missing")


def test_every_default_that_changes_results_is_resolved() -> None:
    config = resolve_config({}).to_dict()
    assert config["schema"] == SCHEMA_VERSION and config["strategy"] == "evolution" and config["trials"] == 20
    assert config["strategy_options"] == {"population_size": 10, "sample_size": 3, "tournament_replacement": False}
    train = config["train"]
    # momentum, nesterov, schedule, ...; fields added later are stored when not at their default (nas.settings)
    assert set(train) == {f.name for f in fields(TrainConfig) if not f.metadata.get(ADDED_LATER)}
    assert train["momentum"] == 0.9 and train["nesterov"] is True and train["schedule"] == "cosine"
    assert train["grad_clip"] == 5.0 and train["label_smoothing"] == 0.0 and train["epochs"] == 3
    assert config["data"] == {"dataset": "digits", "data_root": None, "val_fraction": 0.2, "limit": None}
    assert config["objective"]["metric"] == "val_acc"
    tpe = resolve_config({"strategy": "tpe"}).strategy_options
    assert tpe["n_startup_trials"] == 10 and tpe["multivariate"] is True
    darts = resolve_config({"strategy": "darts", "train": {"epochs": 7}})
    assert darts.space == "darts" and darts.trials == 4 and darts.train is None
    assert darts.strategy_options["epochs"] == 7 and darts.strategy_options["lr"] == 0.025


@pytest.mark.parametrize("given", [
    {}, {"strategy": "tpe", "seed": 3}, {"strategy": "combo", "space": "binary"},
    {"strategy": "darts", "space": "nb201", "strategy_options": {"order": 2}},
    {"strategy": "evolution-annealed", "train": {"lr": 0.1}, "objective": {"max_params": 5000}},
    {"benchmark": "nb201", "table": "t.csv", "time_budget": 500.0},
    {"train": {"precision": "bf16", "compile": True}},
])
def test_stored_configuration_resolves_to_itself(given: dict) -> None:
    config = resolve_config(given)
    stored = json.loads(json.dumps(config.to_dict()))
    assert resolve_config(stored) == config
    assert resolve_config(stored).to_dict() == stored


def test_a_darts_run_stored_before_num_workers_resolves_unchanged() -> None:
    """num_workers is stored only when it is not 1, so the config.json of a DARTS run made before the
    option existed (no such key) resolves to exactly what it holds, and its run resumes."""
    old = resolve_config({"strategy": "darts", "space": "nb201"}).to_dict()
    assert "num_workers" not in old["strategy_options"]
    assert resolve_config(old).to_dict() == old
    assert resolve_config({**old, "strategy_options": {**old["strategy_options"], "num_workers": 1}}).to_dict() == old
    two = resolve_config({**old, "strategy_options": {**old["strategy_options"], "num_workers": 2}}).to_dict()
    assert two["strategy_options"]["num_workers"] == 2 and resolve_config(two).to_dict() == two


def test_explicit_default_is_no_change() -> None:
    assert resolve_config({"strategy_options": {"population_size": 10}, "train": {"momentum": 0.9}}) == \
        resolve_config({})


@pytest.mark.parametrize(("given", "message"), [
    ({"colour": 1}, "unknown configuration key"),
    ({"strategy": "nope"}, "unknown strategy 'nope'"),
    ({"strategy_options": {"order": 2}}, "strategy 'evolution' has no option(s) ['order']"),
    ({"train": {"epochs": 0}}, "TrainConfig.epochs"),
    ({"data": {"val_fraction": 1.5}}, "val_fraction"),
    ({"schema": 1}, "schema 1 is not supported"),
    ({"strategy": "darts", "scheduler": "asha"}, "does not apply"),
    ({"trials": 0}, "trials must be an integer >= 1"),
    ({"train": {"precision": "fp8"}}, "TrainConfig.precision must be one of auto, bf16, fp16, fp32, got 'fp8': set "
                                      "--precision"),
    ({"train": {"compile": "yes"}}, "TrainConfig.compile must be a bool"),
])
def test_bad_values_are_refused_with_one_clear_message(given: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        resolve_config(given)
    assert message in str(info.value)


STORED_BEFORE_PRECISION = Path(__file__).parent / "data" / "config_before_precision.json"
"""A run's config.json as written before TrainConfig had precision and compile (commit 83c8e3e), for
the settings {"trials": 2, "train": {"epochs": 1}, "data": {"limit": 120}}."""


def test_a_run_stored_before_precision_existed_still_resumes(tmp_path: Path) -> None:
    given = {"trials": 2, "train": {"epochs": 1}, "data": {"limit": 120}}
    stored = STORED_BEFORE_PRECISION.read_text()
    assert "precision" not in stored and "compile" not in stored
    for settings, resumes in ((given, True), ({**given, "train": {"epochs": 1, "precision": "bf16"}}, False)):
        run_dir = tmp_path / str(resumes)
        run_dir.mkdir()
        (run_dir / "config.json").write_text(stored)
        if resumes:  # the same command: precision auto (fp32 on CPU, what the run trained in)
            source = build_source(resolve_config(settings), run_dir, log=lambda line: None)
            assert source.run.resumed
            source.run.close()
        else:
            with pytest.raises(ConfigMismatch, match=r"train\.precision: \(absent\) -> 'bf16'"):
                build_source(resolve_config(settings), run_dir, log=lambda line: None)
        assert (run_dir / "config.json").read_text() == stored


def test_fp16_without_gpus_is_refused_before_anything_runs(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--precision", "fp16", "--trials", "1", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas: error: precision 'fp16' needs a CUDA device") and "\n" not in err
    assert not (tmp_path / "run").exists()
    assert main(["search", "--precision", "half", "--run-dir", str(tmp_path / "run")]) == 2
    assert "TrainConfig.precision must be one of" in capsys.readouterr().err


def test_config_files_in_toml_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('strategy = "random"\ntrials = 7\n[train]\nepochs = 2\n')
    (tmp_path / "c.yaml").write_text("strategy: random\ntrials: 7\ntrain:\n  epochs: 2\n")
    (tmp_path / "c.json").write_text(json.dumps({"strategy": "random", "trials": 7, "train": {"epochs": 2}}))
    configs = [resolve_config(load_config_file(tmp_path / f"c.{ext}")) for ext in ("toml", "yaml", "json")]
    assert configs[0] == configs[1] == configs[2] and configs[0].trials == 7 and configs[0].train.epochs == 2
    (tmp_path / "bad.toml").write_text("strategy = \n")
    with pytest.raises(ConfigError, match="not valid toml"):
        load_config_file(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.json")


@needs_table
def test_cli_config_round_trip_and_budget_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["search", "--benchmark", "nb201", "--table", str(NB201_TABLE), "--strategy", "random"]
    assert main([*base, "--trials", "10", "--run-dir", str(tmp_path / "a")]) == 0
    stored = (tmp_path / "a" / "config.json").read_text()
    # the stored config.json is a valid --config input: same resolved configuration
    assert main(["search", "--config", str(tmp_path / "a" / "config.json"), "--run-dir", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "config.json").read_text() == stored
    journal = tmp_path / "a" / "journal.jsonl"
    # a larger budget extends the run; a rerun without --trials resumes with the stored budget
    assert main([*base, "--trials", "15", "--run-dir", str(tmp_path / "a")]) == 0
    assert sum('"event":"result"' in line for line in journal.read_text().splitlines()) == 15
    assert json.loads((tmp_path / "a" / "config.json").read_text())["trials"] == 15
    assert main([*base, "--run-dir", str(tmp_path / "a")]) == 0
    assert sum('"event":"result"' in line for line in journal.read_text().splitlines()) == 15
    capsys.readouterr()
    # shrinking or changing anything else is refused with the difference
    assert main([*base, "--trials", "5", "--run-dir", str(tmp_path / "a")]) == 2
    assert "trials: 15 -> 5 (a run's trials can grow, never shrink)" in capsys.readouterr().err
    assert main([*base, "--seed", "1", "--run-dir", str(tmp_path / "a")]) == 2
    assert "seed: 0 -> 1" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import nas

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"nas {nas.__version__} (distribution " \
                                                                            "graphnas)"


# ---------------------------------------------------------------------------------------------- imports
def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (annotations only: nothing runs them)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            out |= {id(n) for n in ast.walk(node)}
    return out


def module_imports() -> nx.DiGraph:
    """Module -> project module it imports at run time (anywhere in the file: top level or inside a
    function, so an import moved into a function to dodge a cycle still counts)."""
    graph = nx.DiGraph()
    for package in ("nas", "search_spaces"):
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            graph.add_node(name)
            tree = ast.parse(path.read_text())
            typing_only = _type_checking_only(tree)
            for node in ast.walk(tree):
                if id(node) in typing_only:
                    continue
                targets = []
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                for target in targets:
                    if target.split(".")[0] in ("nas", "search_spaces"):
                        graph.add_edge(name, target)
    graph.remove_nodes_from([n for n in list(graph.nodes) if not _is_module(n)])
    return graph


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_import_cycle_in_the_packages() -> None:
    graph = module_imports()
    # a package's __init__ re-exporting its own submodules is not a cycle of the code
    graph.remove_edges_from([(a, b) for a, b in list(graph.edges) if a == b or b.startswith(a + ".")])
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_lower_layers_never_import_upper_ones() -> None:
    graph = module_imports()
    for name in graph.nodes:
        if name.startswith("search_spaces"):
            assert not [t for t in graph.successors(name) if t.startswith("nas")], name
    for low in ("nas.journal", "nas.rundir", "nas.run", "nas.strategies.base", "nas.trainer"):
        above = {t for t in nx.descendants(graph, low)} & {"nas.cli", "nas.engine", "nas.experiment", "nas.config"}
        assert not above, f"{low} reaches {above}"


# ---------------------------------------------------------------------------------------------- loggers
def test_logger_callbacks_by_name() -> None:
    import importlib.util

    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from nas.callbacks import logger_callbacks

    csv, js = logger_callbacks(["csv", "json"])
    assert isinstance(csv, CSVLoggerCallback) and isinstance(js, JsonLoggerCallback)
    with pytest.raises(InputError, match="unknown logger 'nope'"):
        logger_callbacks(["nope"])
    if importlib.util.find_spec("mlflow") is None:
        with pytest.raises(InputError, match="pip install mlflow"):
            logger_callbacks(["mlflow"])
