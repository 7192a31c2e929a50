"""Physical removal of attention heads, FFN neurons and whole layers: ``fairseq-compress shrink``.

It works on the stored state dict: in every ``<stack>.layers.<i>`` of the model (encoder and
decoder of a Transformer) it keeps the strongest heads of each attention module and the
strongest FFN neurons, by the scores fairseq's AdaPrune code uses
(``MultiheadAttention._get_reserve_head_index``: L1 norm of a head's q/k/v rows and biases;
``TransformerEncoderLayerBase._get_fc_rank``: L1 norm of a neuron's fc1 row, its fc2 column and
its bias), slices the matrices, and drops the layers not in ``layers_keep``. fairseq's AdaPrune
prunes the same number of heads in every layer of a RoBERTa encoder, at ``--restore-file`` only;
here each layer keeps its own counts, and the kept shapes travel in the checkpoint's model
config (``layer_shapes``), which ``models/layer_shapes.py`` reads when fairseq builds the model,
so the stock ``fairseq-generate`` / ``fairseq-validate`` / ``fairseq-train`` load the smaller
model with ``--user-dir fairseq_compress`` alone. A pruning task's checkpoint loses exactly what
its structured masks zeroed and its layer gates switched off (``mask_survivors``). A stock
fairseq transformer / roberta checkpoint becomes the plugin's twin arch (``STOCK_SHRUNK_ARCHS``),
the same class with the layer-shapes option.
"""
import copy
import json
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..checkpoint_info import config_value
from ..errors import ConfigError
from ..modules.layer_gates import gates_in, without_gates
from ..modules.weight_parametrizations import PRUNING_MASK
from .structured_pruning import HEAD_PARTS, NEURON_PARTS, masked_units

ATTENTION_MODULES = ("self_attn", "encoder_attn")
LAYER = re.compile(r"^(?P<stack>.*\.layers)\.(?P<index>\d+)\.(?P<rest>.+)$")
# {stack path: [per layer: {"self_attn": heads, "encoder_attn": heads, "ffn": neurons}]}, stored as
# JSON in the model config's layer_shapes
LayerShapes = Dict[str, List[Dict[str, int]]]
# the plugin arch that loads a shrunk checkpoint of a stock fairseq model (the same class with
# LayerShapesMixin), by the stock model's registered name
STOCK_SHRUNK_ARCHS = {"transformer": "shrunk_transformer", "roberta": "shrunk_roberta"}
ELECTRA_GENERATOR = "encoder.generator."
# cfg.model field holding each stack's number of layers, by the stack's state-dict path
LAYER_COUNT_FIELDS = {"encoder.layers": "encoder_layers", "decoder.layers": "decoder_layers",
                      "encoder.sentence_encoder.layers": "encoder_layers"}


def stacks_of(state: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """{stack path: number of layers} of a state dict, e.g. {"encoder.layers": 3, "decoder.layers": 3}."""
    counts: Dict[str, int] = {}
    for name in state:
        match = LAYER.match(name)
        if match and match["stack"].count(".layers") == 1:
            counts[match["stack"]] = max(counts.get(match["stack"], 0), int(match["index"]) + 1)
    return counts


def kept_count(total: int, fraction: float) -> int:
    """How many of `total` units a keep fraction leaves: rounded, at least one."""
    return max(1, min(total, round(total * fraction)))


def head_ranking(state: Dict[str, torch.Tensor], prefix: str, num_heads: int) -> List[int]:
    """Heads of the attention module at `prefix`, strongest first (fairseq's _get_reserve_head_index)."""
    head_dim = state[f"{prefix}.q_proj.weight"].size(0) // num_heads
    norms = torch.zeros(num_heads)
    for proj in ("q_proj", "k_proj", "v_proj"):
        rows = state[f"{prefix}.{proj}.weight"].float().abs().sum(1) + state[f"{prefix}.{proj}.bias"].float().abs()
        norms += rows.view(num_heads, head_dim).sum(1)
    return sorted(range(num_heads), key=lambda h: -norms[h].item())


def neuron_ranking(state: Dict[str, torch.Tensor], prefix: str) -> List[int]:
    """FFN neurons of the layer at `prefix`, strongest first (fairseq's _get_fc_rank, reversed)."""
    scores = (state[f"{prefix}.fc1.weight"].float().abs().sum(1) + state[f"{prefix}.fc2.weight"].float().abs().sum(0)
              + state[f"{prefix}.fc1.bias"].float().abs())
    return sorted(range(scores.numel()), key=lambda n: -scores[n].item())


def slice_heads(state: Dict[str, torch.Tensor], prefix: str, num_heads: int, kept: Sequence[int]) -> None:
    """Keep the heads `kept` (in their original order) of the attention module at `prefix`, in place."""
    head_dim = state[f"{prefix}.q_proj.weight"].size(0) // num_heads
    rows = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in sorted(kept)])
    for proj in ("q_proj", "k_proj", "v_proj"):
        state[f"{prefix}.{proj}.weight"] = state[f"{prefix}.{proj}.weight"][rows].clone()
        state[f"{prefix}.{proj}.bias"] = state[f"{prefix}.{proj}.bias"][rows].clone()
    state[f"{prefix}.out_proj.weight"] = state[f"{prefix}.out_proj.weight"][:, rows].clone()


def slice_neurons(state: Dict[str, torch.Tensor], prefix: str, kept: Sequence[int]) -> None:
    """Keep the FFN neurons `kept` of the layer at `prefix`, in place."""
    index = torch.tensor(sorted(kept))
    state[f"{prefix}.fc1.weight"] = state[f"{prefix}.fc1.weight"][index].clone()
    state[f"{prefix}.fc1.bias"] = state[f"{prefix}.fc1.bias"][index].clone()
    state[f"{prefix}.fc2.weight"] = state[f"{prefix}.fc2.weight"][:, index].clone()


def renumber_layers(state: Dict[str, torch.Tensor], stack: str, kept: Sequence[int]) -> Dict[str, torch.Tensor]:
    """The state dict with only the layers `kept` of `stack`, numbered 0, 1, ... in their order."""
    new_index = {old: new for new, old in enumerate(sorted(kept))}
    renamed = {}
    for name, tensor in state.items():
        match = LAYER.match(name)
        if match and match["stack"] == stack:
            if int(match["index"]) in new_index:
                renamed[f"{stack}.{new_index[int(match['index'])]}.{match['rest']}"] = tensor
        else:
            renamed[name] = tensor
    return renamed


def parse_layers_keep(text: Optional[str], n_layers: int, stack: str) -> List[int]:
    if text is None:
        return list(range(n_layers))
    try:
        kept = [int(i) for i in text.split(",")]
    except ValueError:
        raise ConfigError(f"--layers-keep must be comma-separated layer indices, got '{text}'") from None
    if len(set(kept)) != len(kept) or not all(0 <= i < n_layers for i in kept):
        raise ConfigError(f"--layers-keep {text}: each index once, in [0, {n_layers - 1}] ({stack} has {n_layers} "
                          f"layers)")
    return sorted(kept)


def heads_before(model_cfg, stack: str, index: int, module: str) -> int:
    """Heads of attention module `module` of layer `index` of `stack` as the checkpoint has them:
    from its layer_shapes when it was shrunk before, else the arch's uniform counts."""
    shapes = config_value(model_cfg, "layer_shapes")
    if shapes:
        return json.loads(shapes)[stack][index][module]
    side = "decoder" if stack.startswith("decoder") else "encoder"
    return config_value(model_cfg, f"{side}_attention_heads")


def mask_survivors(masked_state: Dict[str, torch.Tensor], model_cfg) -> Dict[str, List[int]]:
    """{attention module or layer prefix: the heads or FFN neurons its pruning masks keep; stack
    path: the layers its gates keep} of a pruning task's state dict (--prune-granularity head /
    neuron zero whole units, layer gates layers off); empty without masks or gates."""
    survivors: Dict[str, List[int]] = {}
    gates = gates_in(masked_state)
    for stack, n_layers in stacks_of(masked_state).items():
        if any(f"{stack}.{index}" in gates for index in range(n_layers)):
            survivors[stack] = [index for index in range(n_layers) if gates.get(f"{stack}.{index}", True)]
        for index in range(n_layers):
            prefix = f"{stack}.{index}"
            for module in ATTENTION_MODULES:
                if f"{prefix}.{module}.out_proj{PRUNING_MASK}" in masked_state:
                    heads = heads_before(model_cfg, stack, index, module)
                    survivors[f"{prefix}.{module}"] = masked_units(masked_state, f"{prefix}.{module}", HEAD_PARTS, heads)
            if f"{prefix}.fc2{PRUNING_MASK}" in masked_state:
                neurons = masked_state[f"{prefix}.fc2{PRUNING_MASK}"].size(1)
                survivors[prefix] = masked_units(masked_state, prefix, NEURON_PARTS, neurons)
    return survivors


def shrink_state(state: Dict[str, torch.Tensor], model_cfg, heads_keep: float, ffn_keep: float,
                 layers_keep: Optional[str], survivors: Optional[Dict[str, List[int]]] = None
                 ) -> Tuple[Dict[str, torch.Tensor], LayerShapes, Dict[str, int]]:
    """(smaller state dict, its layer shapes, {stack: number of layers kept}). Of the heads and
    neurons that `survivors` (mask_survivors) keeps, or all, the strongest fractions are kept; of
    its layers, those --layers-keep names too."""
    survivors = survivors or {}
    for flag, fraction in (("--heads-keep", heads_keep), ("--ffn-keep", ffn_keep)):
        if not 0 < fraction <= 1:
            raise ConfigError(f"{flag} must be in (0, 1], got {fraction}")
    state = dict(state)
    stacks = stacks_of(state)
    if not stacks:
        raise ConfigError("the checkpoint has no <stack>.layers.<i> layers to shrink")
    kept_layers = {}
    for stack, n_layers in stacks.items():
        alive = set(survivors.get(stack, range(n_layers)))
        kept_layers[stack] = [i for i in parse_layers_keep(layers_keep, n_layers, stack) if i in alive]
        if not kept_layers[stack]:
            raise ConfigError(f"--layers-keep {layers_keep}: none of these layers of {stack} survived the "
                              f"checkpoint's layer pruning (it kept {sorted(alive)})")
    shapes: LayerShapes = {}
    for stack, layers in kept_layers.items():
        shapes[stack] = []
        for old_index in layers:
            prefix, shape = f"{stack}.{old_index}", {}
            for module in ATTENTION_MODULES:
                if f"{prefix}.{module}.q_proj.weight" in state:
                    heads = heads_before(model_cfg, stack, old_index, module)
                    alive = set(survivors.get(f"{prefix}.{module}", range(heads)))
                    ranking = [h for h in head_ranking(state, f"{prefix}.{module}", heads) if h in alive]
                    kept = ranking[:kept_count(len(ranking), heads_keep)]
                    slice_heads(state, f"{prefix}.{module}", heads, kept)
                    shape[module] = len(kept)
            if f"{prefix}.fc1.weight" in state:
                alive = set(survivors.get(prefix, range(state[f"{prefix}.fc1.weight"].size(0))))
                ranking = [n for n in neuron_ranking(state, prefix) if n in alive]
                kept = ranking[:kept_count(len(ranking), ffn_keep)]
                slice_neurons(state, prefix, kept)
                shape["ffn"] = len(kept)
            shapes[stack].append(shape)
        state = renumber_layers(state, stack, layers)
    return state, shapes, {stack: len(layers) for stack, layers in kept_layers.items()}


def shrink_checkpoint(path: str, out: str, heads_keep: float = 1.0, ffn_keep: float = 1.0,
                      layers_keep: Optional[str] = None) -> LayerShapes:
    """Write the shrunk checkpoint of `path` to `out`: a dense checkpoint (no optimizer state) whose
    model config holds the new layer counts and ``layer_shapes``; returns the shapes."""
    from ..modules.weight_parametrizations import fold_pruning_masks
    from .checkpoint_format import load_dense_checkpoint, write_checkpoint

    source = load_dense_checkpoint(path)
    model_cfg = source["cfg"]["model"]
    shrunk_arch = arch_of_shrunk(model_cfg, path)
    if any(name.startswith(ELECTRA_GENERATOR) for name in source["model"]):
        raise ConfigError(f"--path {path}: an ELECTRA pretraining checkpoint (it holds the generator, built with the "
                          "discriminator's layer shapes): shrink the fine-tuned discriminator, a sentence_prediction "
                          "checkpoint")
    state, shapes, layer_counts = shrink_state(without_gates(fold_pruning_masks(source["model"])), model_cfg,
                                               heads_keep, ffn_keep,
                                               layers_keep, mask_survivors(source["model"], model_cfg))
    cfg = dict(source["cfg"])
    cfg["model"] = model_cfg = copy.copy(model_cfg)
    for key in ("arch", "_name"):
        if config_value(model_cfg, key) is not None:
            set_config_value(model_cfg, key, shrunk_arch)
    for stack, count in layer_counts.items():
        set_config_value(model_cfg, LAYER_COUNT_FIELDS[stack], count)
    set_config_value(model_cfg, "layer_shapes", json.dumps(shapes))
    write_checkpoint(state, source, out, cfg=cfg, compressed=False)
    return shapes


def arch_of_shrunk(model_cfg, path: str) -> str:
    """The arch the shrunk checkpoint is loaded as: its own when its model reads layer shapes (the
    plugin's), the plugin's twin of a stock transformer / roberta model, else a one-line error."""
    from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY

    from ..models.layer_shapes import LayerShapesMixin

    arch = config_value(model_cfg, "arch") or config_value(model_cfg, "_name")
    model_class = ARCH_MODEL_REGISTRY.get(arch) or MODEL_REGISTRY.get(arch)
    if model_class is not None and issubclass(model_class, LayerShapesMixin):
        return arch
    for stock_name, shrunk_arch in STOCK_SHRUNK_ARCHS.items():
        if model_class is MODEL_REGISTRY[stock_name]:
            return shrunk_arch
    raise ConfigError(f"--path {path}: shrink supports the plugin's transformer_l*_h*, roberta_l*_h* and ELECTRA archs "
                      f"and fairseq's transformer and roberta ones, not {arch}")


def set_config_value(model_cfg, key, value) -> None:
    if isinstance(model_cfg, dict):
        model_cfg[key] = value
    else:
        setattr(model_cfg, key, value)
