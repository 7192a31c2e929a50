"""Knowledge distillation for iPQ's fine-tuning between stages (``fairseq-compress ipq
--distill``): the quantized student learns the task and the uncompressed teacher's
output distribution (Hinton et al. 2015), which fairseq's iPQ fine-tuning lacks.

    loss = (1 - w) * task loss + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))

summed over the output positions (only the non-pad ones when the output has one
distribution per target token), like fairseq's summed task losses. The
student's output is captured with a forward hook while the task's own criterion
runs, and the teacher (eval mode, no gradient) is called with the same inputs, so
every task and arch works unchanged: translation logits, masked-LM logits at the
masked positions, classification heads.
"""
import torch
import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion


def distillation_kl(student_logits, teacher_logits, temperature, keep=None):
    """T^2 * KL(teacher || student) at temperature T, summed over the kept positions."""
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_position = F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1)
    if keep is not None:
        per_position = per_position[keep]
    return temperature ** 2 * per_position.sum()


class DistillationCriterion(FairseqCriterion):
    inner_class = None  # set by `distilled` (fairseq reduces metrics per criterion class)

    def __init__(self, task, inner, teacher, temperature, weight):
        super().__init__(task)
        self.inner, self.teacher = inner, teacher.eval()
        self.temperature, self.weight = temperature, weight
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def forward(self, model, sample, reduce=True):
        calls = []
        handle = model.register_forward_hook(lambda m, args, kwargs, out: calls.append((args, kwargs, out)),
                                             with_kwargs=True)
        try:
            task_loss, sample_size, logging_output = self.inner(model, sample, reduce)
        finally:
            handle.remove()
        args, kwargs, student_out = calls[0]
        self.teacher.to(student_out[0].device)  # the trainer moved the student (to CUDA, say)
        with torch.no_grad():
            teacher_out = self.teacher(*args, **kwargs)
        student_logits, teacher_logits = student_out[0], teacher_out[0]
        target = sample.get("target")
        keep = None
        if torch.is_tensor(target) and target.dim() == 2 and target.shape == student_logits.shape[:-1]:
            keep = target.ne(self.padding_idx)
        kd = distillation_kl(student_logits, teacher_logits, self.temperature, keep)
        loss = (1 - self.weight) * task_loss + self.weight * kd
        logging_output["loss"] = loss.data
        logging_output["distill_kl"] = kd.data
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs):
        cls.inner_class.reduce_metrics(logging_outputs)

    def logging_outputs_can_be_summed(self):
        return self.inner.logging_outputs_can_be_summed()


def distilled(criterion, task, teacher, temperature, weight):
    """`criterion` with the distillation term added."""
    wrapped = type(f"Distilled{type(criterion).__name__}", (DistillationCriterion,), {"inner_class": type(criterion)})
    return wrapped(task, criterion, teacher, temperature, weight)
