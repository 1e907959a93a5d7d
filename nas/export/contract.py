"""timm's model contract in an exported file: the model class around the generated body, the
``PRETRAINED_CFG`` dict and the ``create_model`` entry point.

The class takes ``num_classes``, ``in_chans`` and ``drop_rate`` (defaults: the exported model's); a
linear classifier at the output (see :meth:`Structure.classifier`) is rebuilt for ``num_classes``
(0: none, ``forward_head`` returns the pre-logits) and preceded by ``head_drop`` (the graph's own
dropout there, else ``nn.Dropout(drop_rate)``, a no-op at 0). Where an architecture fixes either
number (its input is read by something other than convs and linear layers, or it does not end in a
linear classifier) the constructor says so for any other value.

``create_model(pretrained=True)`` loads ``PRETRAINED_CFG["file"]`` (beside the .py) with safetensors,
refuses a file whose ``arch_hash`` metadata (written by :func:`nas.export.weights.save_weights`) is not
this architecture's, and keeps a fresh classifier when ``num_classes`` differs from the trained one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nas.export.pretrained import Normalisation, identity
from nas.export.pysource import docstring, lit
from nas.export.structure import Structure
from nas.export.templates import RESET_PARAMETERS


def classifier_expr(s: Structure) -> str:
    """The classifier for ``num_classes`` outputs (``nn.Identity`` for 0)."""
    unit = s.classifier()
    assert unit is not None
    bias = "" if s.graph.params(unit.out)["bias"] else ", bias=False"
    return f"nn.Linear(self.num_features, num_classes{bias}) if num_classes else nn.Identity()"


def _first_layer(s: Structure, locate: Callable[[str, str], str]) -> str | None:
    """Path of the first conv or linear layer reading the input (timm's ``first_conv``), if any."""
    for node in s.order:
        module = s.modules.get(node)
        if module is None or s.graph.input not in (s.resolve(i) for i in s.graph.inputs_of(node)):
            continue
        for sub, m in module.named_modules():
            if type(m).__name__ in ("Conv2d", "Linear"):
                return locate(node, sub)
    return None


def pretrained_cfg(s: Structure, locate: Callable[[str, str], str], arch_hash: str,
                   normalisation: Normalisation | None, weights_file: str | None) -> dict[str, Any]:
    """The file's ``PRETRAINED_CFG``: the weights file and architecture, and the input the weights expect;
    ``locate(node, name)`` is the exported name of a node's submodule."""
    dims = s.shapes[s.graph.input].dims
    norm = normalisation or identity(dims[0] if s.shapes[s.graph.input].kind == "map" else 1)
    classifier = s.classifier()
    out = s.shapes[s.graph.output].dims
    return {"file": weights_file, "arch_hash": arch_hash, "num_classes": out[-1] if len(out) == 1 else None,
            "input_size": tuple(dims), "dataset": norm.dataset, "max_pixel_value": norm.max_pixel_value,
            "mean": tuple(norm.mean), "std": tuple(norm.std), "first_conv": _first_layer(s, locate),
            "classifier": locate(classifier.out, "") if classifier is not None else None}


def render_cfg(cfg: dict[str, Any]) -> list[str]:
    return ["PRETRAINED_CFG = {", *(f"    {lit(k)}: {lit(v)}," for k, v in cfg.items()), "}"]


def model_class(s: Structure, name: str, in_shape: str, out_shape: str, feat_shape: str,
                init: list[str], features_body: list[str], head_body: list[str], cfg: dict[str, Any]) -> list[str]:
    """The model class: constructor (timm's arguments), initialisation, classifier methods, forwards."""
    classifier, drop = s.classifier(), s.head_dropout()
    in_dims = s.shapes[s.graph.input].dims
    in_chans = in_dims[0] if s.shapes[s.graph.input].kind == "map" else in_dims[-1]
    num_classes = s.shapes[s.graph.output].dims[-1]
    drop_rate = s.graph.params(drop.out)["p"] if drop is not None else 0.0
    pre = s.in_shapes[classifier.out] if classifier is not None else s.shapes[s.graph.output]
    doc = [f"{in_shape} -> {out_shape}; ``forward_head(x, pre_logits=True)`` gives (B, {pre.dims[-1]})."]
    checks = []
    if classifier is None:
        checks += [f"        if num_classes != {num_classes}:",
                   f'            raise ValueError(f"num_classes={{num_classes}}: this architecture has no linear '
                   f'classifier; it outputs {num_classes} values")']
    if not s.in_chans:
        checks += [f"        if in_chans != {in_chans}:",
                   f'            raise ValueError(f"in_chans={{in_chans}}: the first layers of this architecture '
                   f'take {in_chans} channels")']
    lines = [f"class {name}(nn.Module):", *docstring(doc, 4), "",
             f"    def __init__(self, num_classes: int = {num_classes}, in_chans: int = {in_chans}, "
             f"drop_rate: float = {lit(float(drop_rate))}) -> None:",
             "        super().__init__()", *checks,
             "        self.num_classes = num_classes",
             f"        self.num_features = {pre.dims[-1]}",
             "        self.pretrained_cfg = self.default_cfg = dict(PRETRAINED_CFG)",
             *init]
    lines += ["        self.reset_parameters()", "", RESET_PARAMETERS.strip("\n"), ""]
    if classifier is not None:
        attr = cfg["classifier"]
        lines += ["    def get_classifier(self) -> nn.Module:", f"        return self.{attr}", "",
                  "    def reset_classifier(self, num_classes: int) -> None:",
                  '        """A new classifier for ``num_classes`` outputs (0: none, the head returns its input)."""',
                  "        self.num_classes = num_classes",
                  f"        self.{attr} = {classifier_expr(s)}", ""]
    else:
        lines += ["    def get_classifier(self) -> nn.Module:", "        return nn.Identity()", "",
                  "    def reset_classifier(self, num_classes: int) -> None:",
                  '        raise ValueError("this architecture ends in no linear classifier to replace")', ""]
    lines += ["    def forward_features(self, x: torch.Tensor) -> torch.Tensor:",
              *docstring([f"{in_shape} -> {feat_shape}."], 8), *features_body, "",
              "    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:",
              *docstring([f"{feat_shape} -> {out_shape} (the classifier's input with ``pre_logits``)."], 8),
              *head_body, "",
              "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
              *docstring([f"{in_shape} -> {out_shape}."], 8),
              "        return self.forward_head(self.forward_features(x))"]
    return lines


def entry_point(name: str, cfg: dict[str, Any]) -> list[str]:
    """``create_model(pretrained=False, **kwargs)``."""
    head = f"def create_model(pretrained: bool = False, **kwargs: Any) -> {name}:"
    if cfg["file"] is None:
        return [head, *docstring([f"``{name}(**kwargs)``; it was exported without trained weights "
                                  "(PRETRAINED_CFG['file'] is None)."], 4),
                "    if pretrained:",
                f'        raise FileNotFoundError("{name} was exported without trained weights; use pretrained=False")',
                f"    return {name}(**kwargs)"]
    doc = [f"``{name}(**kwargs)``; ``pretrained`` loads the trained weights (PRETRAINED_CFG['file'], beside this "
           "file), refused unless saved for this architecture (their arch_hash). With another ``num_classes`` the "
           "classifier keeps its fresh initialisation (for fine-tuning)."]
    body = [f"    model = {name}(**kwargs)", "    if pretrained:", "        from pathlib import Path", "",
            "        from safetensors import safe_open", "",
            '        path = Path(__file__).with_name(PRETRAINED_CFG["file"])',
            '        with safe_open(str(path), framework="pt") as f:',
            '            found = (f.metadata() or {}).get("arch_hash")',
            '            if found != PRETRAINED_CFG["arch_hash"]:',
            '                raise ValueError(f"{path} holds weights of architecture {found}, not of this one "',
            """                                 f"({PRETRAINED_CFG['arch_hash']})")""",
            "            state = {k: f.get_tensor(k) for k in f.keys()}"]
    if cfg["classifier"] is not None:
        body += ['        if model.num_classes != PRETRAINED_CFG["num_classes"]:  # a new classifier',
                 '            head = PRETRAINED_CFG["classifier"] + "."',
                 "            state = {k: v for k, v in state.items() if not k.startswith(head)}",
                 "            state.update({k: v for k, v in model.state_dict().items() if k.startswith(head)})"]
    return [head, *docstring(doc, 4), *body, "        model.load_state_dict(state)", "    return model"]
