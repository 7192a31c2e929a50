"""Iterative product quantization (iPQ, Stock et al. 2020; Fan, Stock et al. 2020)
of a trained fairseq model, offline: the stages of a fairseq
``--quantization-config-path`` yaml are quantized one after the other, with
optional fine-tuning of the centroids (and of the layers not yet quantized)
between stages, and the result is exported in the compressed checkpoint format.

Reused from fairseq: the yaml format (``parse_config_yaml``), layer selection
(``get_layers``), per-layer block size / centroid count (``get_param``) and the
PQ block layout. Written here, and why:
- k-means: fairseq's ``EM`` broadcasts a [centroids, block, n] tensor (GBs for
  one embedding) and counts clusters in Python; ``kmeans`` below computes the
  same E/M steps with one matmul and ``index_add_``.
- quantized layers: fairseq swaps in ``PQLinear``/``PQEmbedding``, which breaks
  tied weights (the decoder embedding and output projection keep the fp32
  matrix). Here every module that holds the tied weight reads it from one
  shared ``Codebook``.
"""
import copy
import functools
import logging
from dataclasses import dataclass

import torch
from fairseq.modules.quantization.pq.utils import get_layers, get_param
from fairseq.modules.quantization.quantization_options import parse_config_yaml
from torch import nn

from fairseq.utils import safe_getattr

from ..criterions.distillation import DistillationCriterion, check_kd_options
from ..errors import ConfigError
from ..model_loading import load_model
from .checkpoint_format import (encode_dense, load_dense_checkpoint, encode_ipq, pq_decode, round_trip_dense, tie_key,
                                with_aliases, write_checkpoint)

logger = logging.getLogger(__name__)
QUANTIZABLE = (nn.Linear, nn.Embedding)


# Re-implements: fairseq 0.12.3.1 (fairseq-fixed) fairseq.modules.quantization.pq.em.EM (E and M steps, an empty cluster
# split from the most populated one), with k-means++ seeds instead of EM's random columns. No test holds
# the two equal (the seeds differ, so the centroids do); tests/test_ipq.py::test_kmeans_finds_separated_clusters
# and ::test_kmeans_fills_empty_clusters check the clustering.
def kmeans(vectors, n_centroids, n_iter=15, seed=0):
    """Centroids [k, d] and assignments [n] of `vectors` [n, d]: Lloyd's
    iterations from k-means++ seeds; as in fairseq's EM, an empty cluster takes
    half of the most populated one."""
    generator = torch.Generator(device=vectors.device).manual_seed(seed)  # where the fine-tuned model lives
    centroids = kmeans_plus_plus(vectors, n_centroids, generator)
    for _ in range(n_iter):
        assignments = nearest(vectors, centroids)
        counts = torch.bincount(assignments, minlength=n_centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assignments, vectors)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        for empty in torch.nonzero(~filled).flatten():
            largest = int(counts.argmax())
            nudge = 1e-6 * torch.randn(centroids.size(1), generator=generator, device=vectors.device)
            centroids[empty], centroids[largest] = centroids[largest] + nudge, centroids[largest] - nudge
            counts[largest] //= 2
    return centroids, nearest(vectors, centroids)


def kmeans_plus_plus(vectors, n_centroids, generator):
    """Seeds drawn with probability proportional to the squared distance to the
    nearest seed so far (Arthur & Vassilvitskii 2007): clusters are not missed
    the way uniformly drawn seeds miss them."""
    def draw_uniform():
        return int(torch.randint(len(vectors), (1,), generator=generator, device=vectors.device))

    chosen = [draw_uniform()]
    distances = ((vectors - vectors[chosen[0]]) ** 2).sum(1)
    for _ in range(n_centroids - 1):
        if distances.sum() <= 0:  # fewer distinct vectors than centroids
            chosen.append(draw_uniform())
            continue
        chosen.append(int(torch.multinomial(distances, 1, generator=generator)))
        distances = torch.minimum(distances, ((vectors - vectors[chosen[-1]]) ** 2).sum(1))
    return vectors[chosen].clone()


def nearest(vectors, centroids, chunk=1 << 16):
    sq_norms = (centroids * centroids).sum(1)
    return torch.cat([(sq_norms - 2 * part @ centroids.T).argmin(1) for part in vectors.split(chunk)])


# Re-implements: fairseq 0.12.3.1 (fairseq-fixed) fairseq.modules.quantization.pq.pq.PQ._reshape (the Linear case: the
# block order of PQ.W). Held equal by tests/test_ipq.py::test_pq_layout_matches_fairseq.
def pq_blocks(weight, block_size):
    """The blocks of `weight` [out, in] in fairseq PQ order (block index major, row minor)."""
    out_features = weight.size(0)
    return weight.reshape(out_features, -1, block_size).permute(1, 0, 2).reshape(-1, block_size)


class Codebook(nn.Module):
    """A product-quantized weight: trainable centroids and fixed uint8 codes."""

    def __init__(self, centroids, codes, shape):
        super().__init__()
        self.centroids = nn.Parameter(centroids)
        self.register_buffer("codes", codes.to(torch.uint8))
        self.shape = tuple(shape)

    def forward(self):
        return pq_decode(self.centroids, self.codes, self.shape)


@functools.lru_cache(maxsize=None)
def _reading_codebook(cls, name):
    """A subclass of `cls` whose `name` attribute is rebuilt from `<name>_codebook`
    at every access: code that reads the weight without calling the module
    (fairseq's attention passes `q_proj.weight` & co. to a fused kernel) gets
    the current centroids, with gradients, as torch's parametrizations do."""
    codebook = property(lambda self: getattr(self, f"{name}_codebook")())
    return type(cls.__name__, (cls,), {name: codebook})


def holders_of(model, parameter):
    return [(module, name) for module in model.modules() for name, p in module._parameters.items() if p is parameter]


def attach_codebook(model, parameter, codebook):
    """Every module that holds `parameter` now computes it from `codebook`."""
    for module, name in holders_of(model, parameter):
        del module._parameters[name]
        module.add_module(f"{name}_codebook", codebook)
        module.__class__ = _reading_codebook(type(module), name)


def load_config(path):
    import yaml

    with open(path) as f:
        config = parse_config_yaml(yaml.safe_load(f) or {})
    if not config["layers_to_quantize"]:
        raise ConfigError(f"--config {path}: layers_to_quantize is empty")
    return config


def stage_layers(model, regex):
    """Names of the not yet quantized Linear/Embedding layers a stage's regex selects."""
    layers = []
    for name in get_layers(model, regex):
        module = model.get_submodule(name) if name else model
        if isinstance(module, QUANTIZABLE) and isinstance(module._parameters.get("weight"), nn.Parameter):
            layers.append(name)
    return layers


def plan_stages(model, config, config_path):
    """[(regex, [(layer, block size, centroids)])] for every stage, checked before any k-means."""
    plan = []
    for step, regex in enumerate(config["layers_to_quantize"]):
        layers = stage_layers(model, regex)
        if not layers:
            raise ConfigError(f"--config {config_path}: stage {step + 1} ({regex}) matches no Linear/Embedding layer "
                              f"of this model; is the yaml meant for this architecture?")
        entries = []
        for name in layers:
            module = model.get_submodule(name)
            try:
                block_size = get_param(module, name, config["block_sizes"])
                n_centroids = get_param(module, name, config["n_centroids"])
            except KeyError as error:
                raise ConfigError(f"--config {config_path}: no block size / centroid count for {name}: {error}") from None
            in_features = module.weight[0].numel()
            if in_features % block_size:
                raise ConfigError(f"--config {config_path}: block size {block_size} does not divide the "
                                  f"{in_features} input features of {name}")
            if not 1 <= n_centroids <= 256:
                raise ConfigError(f"--config {config_path}: {name} asks for {n_centroids} centroids; uint8 codes allow 1 to 256")
            entries.append((name, block_size, n_centroids))
        plan.append((regex, entries))
    return plan


def quantize_layer(model, name, block_size, n_centroids, n_iter):
    weight = model.get_submodule(name).weight
    with torch.no_grad():
        centroids, codes = kmeans(pq_blocks(weight.detach().float(), block_size), n_centroids, n_iter)
    attach_codebook(model, weight, Codebook(centroids, codes, weight.shape))


def quantize_stage(model, layers, n_iter=15, progress=None):
    for name, block_size, n_centroids in layers:
        quantize_layer(model, name, block_size, n_centroids, n_iter)
        if progress is not None:
            progress.update(1)


def round_to_stored_precision(model):
    """Make the in-memory model hold exactly what the compressed file stores
    (tensors that are not saved, such as sinusoidal position tables, stay exact)."""
    with torch.no_grad():
        for tensor in model.state_dict(keep_vars=True).values():
            if tensor.is_floating_point():
                tensor.copy_(round_trip_dense(tensor))


def compressed_model_state(model, dense_keys):
    """The compressed ``model`` entry: one entry per name of the dense state dict,
    tied tensors stored once."""
    state = model.state_dict()

    def source_of(key):
        prefix, _, attr = key.rpartition(".")
        codebook = getattr(model.get_submodule(prefix) if prefix else model, f"{attr}_codebook", None)
        if codebook is not None:
            return id(codebook), lambda: encode_ipq(codebook.centroids, codebook.codes, codebook.shape)
        tensor = state[key]
        return (tie_key(tensor) if tensor.numel() else None), lambda: encode_dense(tensor)

    return with_aliases((key, *source_of(key)) for key in dense_keys)


@dataclass(frozen=True)
class Distillation:
    """Fine-tune against the uncompressed model too (criterions/distillation.py)."""
    teacher: nn.Module
    temperature: float = 2.0
    weight: float = 0.5


def finetune(model, cfg, task, updates, lr, distillation=None):
    """`updates` steps of fairseq's Trainer on the checkpoint's own task and
    criterion (without quantization noise), at a fixed learning rate: between
    iPQ stages this adapts the centroids and the layers not quantized yet.
    With `distillation`, the loss mixes in the KL divergence to the teacher's outputs."""
    from fairseq.optim.lr_scheduler.fixed_schedule import FixedLRScheduleConfig
    from fairseq.trainer import Trainer
    from omegaconf import OmegaConf, open_dict

    with open_dict(cfg):
        cfg.common.cpu = not torch.cuda.is_available()
        cfg.common.fp16 = cfg.common.bf16 = cfg.common.memory_efficient_fp16 = cfg.common.amp = False
        cfg.optimization.lr = [lr]
        cfg.lr_scheduler = OmegaConf.structured(FixedLRScheduleConfig(_name="fixed", lr=[lr]))
        if cfg.criterion._name == "quant_noise":
            cfg.criterion.qn_pq = cfg.criterion.qn_scalar = 0.0
    task.load_dataset(cfg.dataset.train_subset, combine=False, epoch=1)
    criterion = task.build_criterion(cfg.criterion)
    if distillation is not None:
        criterion = DistillationCriterion.wrapping(criterion, task, distillation.teacher, distillation.temperature,
                                                   distillation.weight)
    trainer = Trainer(cfg, task, model, criterion)
    model.train()
    done, epoch = 0, 1
    while done < updates:
        for sample in trainer.get_train_iterator(epoch=epoch, load_dataset=False).next_epoch_itr(shuffle=True):
            trainer.train_step([sample])
            done += 1
            if done == updates:
                break
        epoch += 1
    model.eval()


def check_distillation(cfg, data, finetune_updates, temperature, weight):
    if not (data and finetune_updates):
        raise ConfigError("--distill acts in the fine-tuning between stages: pass --data DIR and --finetune-updates N > 0")
    check_kd_options(weight, temperature, "--distill-weight", "--distill-temperature")
    if "electra" in (cfg.criterion._name, safe_getattr(cfg.criterion, "qn_criterion", None)):
        raise ConfigError("--distill needs one output distribution per position; ELECTRA's discriminator gives one "
                          "logit per token and its input is sampled anew each call")


def compress_checkpoint(path, config_path, out, data=None, finetune_updates=0, lr=1e-4, n_iter=15,
                        distill_temperature=None, distill_weight=0.5):
    """Quantize the stages of `config_path` in order (fine-tuning between stages
    when `data` and `finetune_updates` are given, distilled from the uncompressed
    model when `distill_temperature` is); write `out`; return the model."""
    from tqdm import tqdm

    config = load_config(config_path)
    source = load_dense_checkpoint(path)
    model, task, cfg = load_model(path, data)
    distillation = None
    if distill_temperature is not None:
        check_distillation(cfg, data, finetune_updates, distill_temperature, distill_weight)
        distillation = Distillation(copy.deepcopy(model), distill_temperature, distill_weight)
    plan = plan_stages(model, config, config_path)
    dense_keys = list(model.state_dict().keys())
    with tqdm(total=sum(len(layers) for _, layers in plan), desc="iPQ layers", unit="layer") as progress:
        for step, (regex, layers) in enumerate(plan):
            progress.set_postfix(stage=f"{step + 1}/{len(plan)}")
            quantize_stage(model, layers, n_iter, progress)
            logger.info(f"stage {step + 1} ({regex}): quantized {len(layers)} layers")
            if data and finetune_updates:
                finetune(model, cfg, task, finetune_updates, lr, distillation)
    round_to_stored_precision(model)
    write_checkpoint(compressed_model_state(model, dense_keys), source, out)
    return model
