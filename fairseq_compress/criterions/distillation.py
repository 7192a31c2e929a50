"""Knowledge distillation as a criterion that wraps any of the usual ones (``--criterion
distillation --kd-criterion NAME --teacher-path CKPT``): the student learns the task and the
teacher's output distribution (Hinton et al. 2015; word-level KD, Kim & Rush 2016):

    loss = (1 - w) * inner loss + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))

summed over the positions the inner loss sums over: every non-pad target token (translation), the
masked positions (masked LM: DistilBERT's soft-target loss), one class distribution per sentence
(classification). fairseq has no distillation criterion (its pull request was closed unmerged).

The student's output is captured with a forward hook while the inner criterion runs, and the
teacher is called with the same inputs, so every task, arch and feature that changes the student's
forward (DropHead, quant-noise as the inner criterion, pruning masks) works unchanged. The teacher
lives outside the criterion's module tree: fairseq's trainer never casts, wraps (DDP), optimizes or
saves it, and each rank loads it once. ``fairseq-compress ipq --distill`` uses this class too.
"""
import math
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from torch import nn

from ..checkpoint_info import stock_task
from ..errors import ConfigError
from .inner_criterion import chosen_inner_class, subclass_for, with_inner_options

KD_CRITERIA = ("cross_entropy", "label_smoothed_cross_entropy", "masked_lm", "sentence_prediction", "quant_noise")


@dataclass
class DistillationOptions(FairseqDataclass):
    kd_criterion: str = field(default="label_smoothed_cross_entropy",
                              metadata={"help": f"the task's criterion, which the KD term is added to: {', '.join(KD_CRITERIA)}"})
    teacher_path: str = field(default="", metadata={"help": "the teacher's checkpoint (any the plugin loads: stock, "
                                                            "plugin archs, pruning-task, shrunk, compressed)"})
    kd_weight: float = field(default=0.5, metadata={"help": "W in loss = (1 - W) inner loss + W T^2 KL, in [0, 1]"})
    kd_temperature: float = field(default=1.0, metadata={"help": "T: the softmax temperature of both models, > 0"})


DistillationConfig = with_inner_options("DistillationConfig", DistillationOptions, KD_CRITERIA)


def distillation_kl(student_logits, teacher_logits, temperature, keep=None):
    """T^2 * KL(teacher || student) at temperature T, in fp32, summed over the kept positions."""
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_position = F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1)
    if keep is not None:
        per_position = per_position[keep]
    return temperature ** 2 * per_position.sum()


class FrozenTeacher:
    """The teacher model, deliberately not an nn.Module attribute of the criterion (see the module
    docstring): eval mode, no gradient, moved to the student's device and dtype at its first call."""

    def __init__(self, model: nn.Module):
        self.model = model.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, student: nn.Module, args, kwargs):
        weight = next(p for p in student.parameters() if p.is_floating_point())
        mine = next(self.model.parameters())
        if (mine.device, mine.dtype) != (weight.device, weight.dtype):  # the first call: not a walk every step
            self.model.to(device=weight.device, dtype=weight.dtype)
        return self.model(*args, **kwargs)


def check_kd_options(weight, temperature, weight_flag="--kd-weight", temperature_flag="--kd-temperature"):
    if not 0 <= weight <= 1:
        raise ConfigError(f"{weight_flag} must be in [0, 1], got {weight}")
    if not temperature > 0:
        raise ConfigError(f"{temperature_flag} must be > 0, got {temperature}")


def load_teacher(path: str, task, flag: str = "--teacher-path") -> nn.Module:
    """The teacher at `path` (given with `flag`) for the student's `task`: refused unless it was
    trained on the same stock task with the same dictionaries."""
    from ..model_loading import load_model

    if not path:
        raise ConfigError(f"distillation needs {flag} CKPT")
    if not os.path.isfile(path):
        raise ConfigError(f"{flag} {path}: no such file")
    try:
        teacher, teacher_task, teacher_cfg = load_model(path)
    except ConfigError:  # the teacher's data directory is not here: read it with the student's dictionaries
        try:
            teacher, teacher_task, teacher_cfg = load_model(path, task.cfg.data)
        except RuntimeError as error:  # the embeddings do not fit those dictionaries
            raise ConfigError(f"{flag} {path} was trained with other dictionaries than --data "
                              f"{task.cfg.data}: {str(error).splitlines()[-1].strip()}") from None
    if stock_task(teacher_cfg.task._name) != stock_task(task.cfg._name):
        raise ConfigError(f"{flag} {path} was trained for the task {teacher_cfg.task._name}; the student's "
                          f"task is {task.cfg._name}")
    for side in ("source_dictionary", "target_dictionary"):
        mine, theirs = getattr(task, side), getattr(teacher_task, side)
        if mine is not None and (theirs is None or mine.symbols != theirs.symbols):
            raise ConfigError(f"{flag} {path} was trained with another {side.replace('_', ' ')} "
                              f"({len(theirs or [])} symbols) than --data {task.cfg.data} ({len(mine)}): "
                              "the teacher and the student must share their dictionaries")
    return teacher


@register_criterion("distillation", dataclass=DistillationConfig)
class DistillationCriterion(FairseqCriterion):
    inner_class = None  # set per inner criterion by subclass_for (fairseq reduces metrics per class)

    def __init__(self, task, inner, teacher: nn.Module, temperature: float, weight: float):
        super().__init__(task)
        self.inner, self.teacher = inner, FrozenTeacher(teacher)
        self.temperature, self.weight = temperature, weight

    @classmethod
    def build_criterion(cls, cfg, task):
        check_kd_options(cfg.kd_weight, cfg.kd_temperature)
        inner = chosen_inner_class("--kd-criterion", cfg.kd_criterion, KD_CRITERIA)
        teacher = load_teacher(cfg.teacher_path, task)
        return cls.wrapping(inner.build_criterion(cfg, task), task, teacher, cfg.kd_temperature, cfg.kd_weight)

    @classmethod
    def wrapping(cls, inner, task, teacher, temperature, weight):
        """`inner` (a built criterion) with the distillation term added."""
        return subclass_for(cls, type(inner))(task, inner, teacher, temperature, weight)

    def forward(self, model, sample, reduce=True):
        if not model.training:  # validation reports the task's own loss
            return self.inner(model, sample, reduce)
        calls = []
        handle = model.register_forward_hook(lambda m, args, kwargs, out: calls.append((args, kwargs, out)),
                                             with_kwargs=True)
        try:
            task_loss, sample_size, logging_output = self.inner(model, sample, reduce)
        finally:
            handle.remove()
        args, kwargs, student_out = calls[0]
        student_logits, teacher_logits = student_out[0], self.teacher(model, args, kwargs)[0]
        target = sample.get("target")
        keep = None
        if torch.is_tensor(target) and target.shape == student_logits.shape[:-1]:  # one distribution per token
            keep = target.ne(self.padding_idx)
        kd_loss = distillation_kl(student_logits, teacher_logits, self.temperature, keep)
        loss = (1 - self.weight) * task_loss + self.weight * kd_loss
        logging_output["loss"] = loss.data
        logging_output["kd_loss"] = kd_loss.data
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs):
        cls.inner_class.reduce_metrics(logging_outputs)
        # utils.item: several ranks' logging outputs come back from fairseq's sync as tensors
        sample_size = utils.item(sum(log.get("sample_size", 0) for log in logging_outputs))
        if sample_size and any("kd_loss" in log for log in logging_outputs):
            kd_loss = utils.item(sum(log.get("kd_loss", 0) for log in logging_outputs))
            metrics.log_scalar("kd_loss", kd_loss / sample_size / math.log(2), sample_size, round=3)

    def logging_outputs_can_be_summed(self):
        return self.inner.logging_outputs_can_be_summed()
