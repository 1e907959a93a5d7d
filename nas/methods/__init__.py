"""Search methods as the dispatcher runs them: multi-trial (ask/tell strategies) and one-shot (DARTS).

:mod:`nas.methods.multi_trial` serves any :class:`~nas.strategies.base.Strategy` with an
evaluator; :mod:`nas.methods.base` is the base of one-shot methods (each trial a whole search);
:mod:`nas.methods.registry` names the one-shot methods.
"""
