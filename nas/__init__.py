"""nas: neural architecture search on graph search spaces, as a library and a command.

::

    import nas
    exp = nas.Experiment(space="macro", evaluator=nas.Trainer(dataset="digits", epochs=3),
                         strategy="evolution", trials=20, run_dir="runs/mine", seed=0)
    result = exp.run()          # rerun = resume
    result.best.arch, result.best.score, result.best.trial

See :class:`nas.Experiment` (:mod:`nas.experiment`), evaluators (:mod:`nas.evaluators`), the
strategy contract (:mod:`nas.strategies.base`), the space contract
(:mod:`search_spaces.spaces.base`) and the conformance suites (:mod:`nas.testing`).
"""

from nas.config import Execution, SearchConfig, load_config_file, resolve_config
from nas.evaluators import Evaluator, FunctionEvaluator, Trainer
from nas.experiment import Experiment, Result, TrialResult
from nas.objective import Objective
from nas.strategies.base import Proposal, Strategy
from nas.trial import Trial
from search_spaces.spaces.base import SearchSpace, Variable

__version__ = "0.2.0"

__all__ = ["Evaluator", "Execution", "Experiment", "FunctionEvaluator", "Objective", "Proposal", "Result",
           "SearchConfig", "SearchSpace", "Strategy", "Trainer", "Trial", "TrialResult", "Variable", "__version__",
           "load_config_file", "resolve_config"]
