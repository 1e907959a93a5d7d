"""DARTS (Liu, Simonyan & Yang, ICLR 2019): differentiable search over per-edge op choices.

* :mod:`nas.darts.supernet`: mixed ops and the DARTS / NAS-Bench-201 search networks.
* :mod:`nas.darts.adapters`: space <-> supernet (which ops, how to derive a member from the alphas).
* :mod:`nas.darts.cells`: the supernet of any space that describes its cell (:class:`CellSpec`).
* :mod:`nas.darts.architect`: first- and second-order architecture gradients, Hessian eigenvalue.
* :mod:`nas.darts.search`: :class:`DartsConfig` and one bilevel search (:func:`darts_search`).
* :mod:`nas.darts.distributed`: data parallel (shards, summed gradients, global batch norm).
* :mod:`nas.darts.memory`: the supernet's memory estimate and the pre-launch check.
* :mod:`nas.darts.trial` / :mod:`nas.darts.workers`: one search's reports; a search on Ray Train workers.
* :mod:`nas.darts.method`: ``nas search --strategy darts`` (a one-shot method: searches as Ray Tune trials).
"""

from nas.darts.adapters import CellAdapter, DartsAdapter, EdgeAdapter, NB201Adapter, adapter_for, build_supernet
from nas.darts.cells import CellEdge, CellSpec
from nas.darts.search import DartsConfig, DartsResult, darts_search

__all__ = ["CellAdapter", "CellEdge", "CellSpec", "DartsAdapter", "DartsConfig", "DartsResult", "EdgeAdapter",
           "NB201Adapter", "adapter_for", "build_supernet", "darts_search"]
