"""Lottery tickets (--prune-schedule imp): the round schedule and the LR schedule's restart, the mask's
sparsity after each round, the rewind (bitwise) as the task's train step does it, the random-reinit
control, exact resume after kill -9, the three tasks, the ticket through fairseq-compress, bad input."""
import json
import re

import pytest
import torch
from conftest import TRAIN_MLM, TRAIN_MT, one_line_error, run
from test_resume import DUMPING, assert_same_run, kill_after_first_save
from torch import nn

import fairseq_compress  # noqa: F401
from fairseq_compress.errors import ConfigError
from fairseq_compress.modules.weight_parametrizations import REWIND_POINT, rewind_point, rewind_weights
from fairseq_compress.tasks.pruning import (PruningMixin, PruningOptions, attach_masks, check_options,
                                            is_mask_update, lr_schedule_update, measured_sparsity, rewind,
                                            save_rewind_point, target_sparsity, update_masks)

RATE = 0.2


def imp_options(**kwargs):
    given = dict(prune_schedule="imp", imp_rounds=3, imp_rate=RATE, imp_round_updates=10, rewind_update=2,
                 max_update=40, ddp_backend="legacy_ddp", fp16=False, bf16=False, seed=1)
    return PruningOptions(**{**given, **kwargs})


def test_rounds_prune_at_their_boundaries_and_restart_the_lr_schedule_at_the_rewind_update():
    cfg = imp_options()
    assert [u for u in range(100) if is_mask_update(cfg, u)] == [10, 20, 30]
    assert [target_sparsity(cfg, u) for u in (0, 9)] == [0, 0]
    for update, rounds in ((10, 1), (19, 1), (20, 2), (35, 3), (40, 3)):
        assert target_sparsity(cfg, update) == pytest.approx(1 - (1 - RATE) ** rounds)
    assert [lr_schedule_update(cfg, u) for u in (0, 2, 9, 10, 11, 19, 20, 30, 39, 40)] == \
        [0, 2, 9, 2, 3, 11, 2, 2, 11, 12]


def two_layers():
    torch.manual_seed(0)
    return nn.ModuleDict({"a": nn.Linear(40, 30), "b": nn.Linear(30, 20)})


def masks_of(model):
    return {name: mask.clone() for name, _, mask, _ in rewind_weights(model)}


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_each_round_removes_the_rate_of_the_survivors_and_rewinds_them_bitwise(scope):
    model = two_layers()
    cfg = imp_options(prune_targets="a|b", prune_scope=scope)
    attach_masks(model, cfg)
    save_rewind_point(model)
    saved = {name: original.detach().clone() for name, original, _, _ in rewind_weights(model)}
    saved_others = others(model)
    assert set(saved_others) == {"a.bias", "b.bias"}  # every parameter that is not a target
    before = masks_of(model)
    for round_ in range(1, cfg.imp_rounds + 1):
        with torch.no_grad():  # a round of "training": the survivors move, the pruned stay zero, the rest moves
            for _, original, mask, _ in rewind_weights(model):
                original.add_(torch.randn_like(original) * 0.1).mul_(mask)
            for _, parameter, _ in rewind_point(model):
                parameter.add_(torch.randn_like(parameter) * 0.1)
        trained = {name: original.detach().clone() for name, original, _, _ in rewind_weights(model)}
        update_masks(model, cfg, target_sparsity(cfg, round_ * cfg.imp_round_updates))
        rewind(model)
        after = masks_of(model)
        groups = [list(after)] if scope == "global" else [[name] for name in after]
        for names in groups:  # round((1 - F)^r n) kept over the scope: F of the previous survivors removed
            n = sum(after[name].numel() for name in names)
            kept, kept_before = (sum(int(m[name].sum()) for name in names) for m in (after, before))
            assert kept == round((1 - RATE) ** round_ * n)
            assert abs(kept - (1 - RATE) * kept_before) <= 1
        assert measured_sparsity(model) == pytest.approx(1 - (1 - RATE) ** round_, abs=1e-3)
        kept_scores = torch.cat([trained[name][after[name]].abs() for name in after])
        pruned_scores = torch.cat([trained[name][~after[name]].abs() for name in after])
        if scope == "global":  # by magnitude after training, not at the rewind point
            assert pruned_scores.max() <= kept_scores.min()
        for name, original, mask, _ in rewind_weights(model):
            assert not (mask & ~before[name]).any()  # nothing pruned comes back
            assert torch.equal(original[mask], saved[name][mask]) and (original[~mask] == 0).all()
        assert all(torch.equal(value, saved_others[name]) for name, value in others(model).items())
        before = after


def others(model):
    """{name: value} of the parameters that are not masked targets."""
    return {name: parameter.detach().clone() for name, parameter, _ in rewind_point(model)}


class Parent:
    """The stock task's train_step: records the weights the update starts from."""

    def train_step(self, sample, model, *args):
        self.seen = {name: original.detach().clone() for name, original, _, _ in rewind_weights(model)}
        self.seen_others = others(model)


class Task(PruningMixin, Parent):
    def __init__(self, cfg):  # the mixin's state without a stock task's data
        self.cfg, self.started_update, self.scored_groups, self.gated_layers = cfg, None, [], []


class Optimizer:  # fairseq's wrapper around the torch optimizer
    def __init__(self):
        self.optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))])
        self.optimizer.state["moments"] = {"exp_avg": 1}


def test_the_train_step_saves_the_rewind_point_and_starts_each_round_from_it():
    model = two_layers()
    cfg = imp_options(prune_targets="a|b", imp_rounds=1, imp_round_updates=3, rewind_update=1, max_update=6)
    attach_masks(model, cfg)
    task, optimizer = Task(cfg), Optimizer()
    trajectory, trajectory_others = {}, {}
    for update in range(cfg.max_update):
        task.train_step(None, model, None, optimizer, update)
        trajectory[update], trajectory_others[update] = task.seen, task.seen_others
        with torch.no_grad():  # the update, then the mixin's re-zeroing (optimizer_step)
            for _, original, mask, _ in rewind_weights(model):
                original.add_(torch.randn_like(original) * 0.1).mul_(mask)
            for _, parameter, _ in rewind_point(model):
                parameter.add_(torch.randn_like(parameter) * 0.1)
        if update == 2:
            assert optimizer.optimizer.state  # the first round's moments live until its end
    for name, original, mask, rewind_to in rewind_weights(model):
        assert torch.equal(rewind_to, trajectory[1][name])  # the weights after --rewind-update 1 updates
        start = trajectory[3][name]  # what the second round's first update started from
        assert torch.equal(start[mask], trajectory[1][name][mask]) and (start[~mask] == 0).all()
    for name, _, rewind_to in rewind_point(model):  # the biases too: the whole network restarts at the rewind point
        assert torch.equal(rewind_to, trajectory_others[1][name]) and torch.equal(trajectory_others[3][name], rewind_to)
        assert not torch.equal(trajectory_others[2][name], rewind_to)
    assert measured_sparsity(model) == pytest.approx(RATE, abs=1e-3)
    assert not optimizer.optimizer.state  # the second round started with a new optimizer


IMP = ["--task", "translation_pruning", "--prune-schedule", "imp", "--imp-rounds", "2", "--imp-rate", str(RATE),
       "--imp-round-updates", "4", "--max-update", "12", "--save-interval-updates", "1", "--log-interval", "1",
       "--log-format", "json", "--drophead-p", "0.2", "--warmup-updates", "6"]


def imp_command(mt_data, *flags):
    return DUMPING + TRAIN_MT[1:] + [mt_data, "--arch", "transformer_l2_h128", *IMP, *flags]


def dump(save, update):
    return torch.load(save / "rank0" / f"{update}.pt", weights_only=True)["model"]


def masks_in(state):
    return {k: v for k, v in state.items() if k.endswith(".0.mask")}


def rewind_point_in(state):
    """{parameter name: rewind value} of a lottery ticket's RewindPoint in a checkpoint's model state."""
    prefix = f"{REWIND_POINT}."
    return {key[len(prefix):].replace("__", "."): value for key, value in state.items() if key.startswith(prefix)}


def sparsity_in(state):
    masks = masks_in(state).values()
    return sum(int((~m).sum()) for m in masks) / sum(m.numel() for m in masks)


@pytest.fixture(scope="module")
def imp_run(mt_data, tmp_path_factory):
    save = tmp_path_factory.mktemp("imp")
    result = run(imp_command(mt_data, "--rewind-update", "2", "--save-dir", save))
    return save, result.stdout + result.stderr


def test_translation_rounds_rewind_point_and_lr_restart(imp_run):
    save, log = imp_run
    for update in range(1, 13):
        rounds = min(update - 1, 8) // 4  # the mask of round r is made at the start of update 4r + 1
        assert sparsity_in(dump(save, update)) == pytest.approx(1 - (1 - RATE) ** rounds, abs=1e-3)
    # the first update runs at lr 0 (warmup from 0): --rewind-update 2 is the first point that differs from the init
    before, at_rewind_update, after = dump(save, 1), dump(save, 2), dump(save, 3)
    for update in (4, 9, 12):
        state = dump(save, update)
        for key in masks_in(state):
            prefix = key[: -len("0.mask")]
            assert torch.equal(state[prefix + "0.rewind"], at_rewind_update[prefix + "original"])
            assert not torch.equal(state[prefix + "0.rewind"], before[prefix + "original"])
            assert not torch.equal(state[prefix + "0.rewind"], after[prefix + "original"])
        point = rewind_point_in(state)  # every other parameter's value at the rewind update, embeddings included
        assert {"encoder.embed_tokens.weight", "encoder.layers.0.fc1.bias", "decoder.layers.1.final_layer_norm.weight"} <= set(point)
        for name, value in point.items():
            assert torch.equal(value, at_rewind_update[name]) and "parametrizations" not in name
        assert not torch.equal(point["encoder.embed_tokens.weight"], after["encoder.embed_tokens.weight"])
    records = [json.loads(line) for line in re.findall(r"train_inner\W+(\{.*\})", log)]  # --log-format json
    lr = {int(record["num_updates"]): float(record["lr"]) for record in records}
    # after update u the schedule stands at u in the first round, at 2 + u - 4r in round r (--rewind-update 2)
    assert lr[4] == lr[8] == lr[2] and lr[5] == lr[9] == lr[3] and lr[1] < lr[2] < lr[3]  # warmup: rising


def test_kill_9_mid_round_then_rerun_equals_an_uninterrupted_run(imp_run, mt_data, tmp_path):
    whole, _ = imp_run
    cmd = imp_command(mt_data, "--rewind-update", "2", "--save-dir", tmp_path)
    # killed in the second round (its mask made at update 5): the rewind point (update 2) must come from the checkpoint
    assert kill_after_first_save(cmd, tmp_path, 0.2, saved="rank0/6.pt"), "the run ended before it could be killed"
    assert not (tmp_path / "rank0/9.pt").exists()
    run(cmd)  # the same command resumes from checkpoint_last.pt
    assert_same_run(torch.load(tmp_path / "rank0/12.pt", weights_only=True),
                    torch.load(whole / "rank0/12.pt", weights_only=True))


def test_random_reinit_keeps_the_mask_with_fresh_weights(imp_run, mt_data, tmp_path):
    ticket, _ = imp_run
    run(imp_command(mt_data, "--ticket-control", "random-reinit", "--save-dir", tmp_path, "--max-update", "12"))
    trained, control_trained = dump(ticket, 4), dump(tmp_path, 4)
    after, control_after = dump(ticket, 5), dump(tmp_path, 5)
    for key, mask in masks_in(after).items():
        prefix = key[: -len("0.mask")]
        assert torch.equal(control_trained[prefix + "original"], trained[prefix + "original"])  # same first round
        assert torch.equal(control_after[key], mask) and not mask.all()  # so the same mask
        fresh, rewound = control_after[prefix + "0.rewind"], after[prefix + "0.rewind"]
        assert not torch.equal(fresh, rewound) and not torch.equal(fresh, trained[prefix + "original"])
        assert 0.8 < fresh.std() / rewound.std() < 1.25  # the arch's own initialization, drawn again
    fresh_embeddings = rewind_point_in(control_after)["encoder.embed_tokens.weight"]  # the other parameters too
    assert not torch.equal(fresh_embeddings, rewind_point_in(after)["encoder.embed_tokens.weight"])
    assert not torch.equal(fresh_embeddings, trained["encoder.embed_tokens.weight"])


def test_the_ticket_generates_quantizes_prunes_and_exports(imp_run, mt_data, tmp_path):
    save, _ = imp_run
    ticket = save / "checkpoint_last.pt"
    assert "BLEU" in run(["fairseq-generate", mt_data, "--user-dir", TRAIN_MT[2], "--cpu", "--path", ticket,
                          "--gen-subset", "test", "--beam", "2", "--max-sentences", "50", "--max-len-b", "10",
                          "--num-workers", "0"]).stdout
    run(["fairseq-compress", "quantize", "--path", ticket, "--bits", "8", "--out", tmp_path / "int8.pt"])
    stored = torch.load(tmp_path / "int8.pt", map_location="cpu", weights_only=True)["model"]
    assert stored["encoder.layers.0.fc1.weight"]["format"] == "sparse"
    assert not any("parametrizations" in name or "rewind" in name for name in stored)
    run(["fairseq-compress", "prune", "--path", ticket, "--sparsity", "0.5", "--out", tmp_path / "pruned.pt"])
    run(["fairseq-compress", "export", "--format", "ctranslate2", "--path", ticket, "--data", mt_data,
         "--out", tmp_path / "ct2", "--quantization", "int8"])
    assert (tmp_path / "ct2" / "model.bin").stat().st_size > 0


def test_masked_lm_and_classification_tickets(mlm_data, tmp_path):
    en_bin, cls_bin = mlm_data
    imp = ["--prune-schedule", "imp", "--imp-rounds", "1", "--imp-round-updates", "2", "--max-update", "4",
           "--rewind-update", "1"]
    run(["fairseq-train", en_bin, *TRAIN_MLM, "--task", "masked_lm_pruning", "--arch", "roberta_l2_h128",
         "--tokens-per-sample", "64", "--max-tokens", "1024", "--save-dir", tmp_path / "mlm", *imp])
    n_classes = len((cls_bin / "label/dict.txt").read_text().splitlines())
    run(["fairseq-train", cls_bin, *TRAIN_MLM, "--task", "sentence_prediction_pruning", "--criterion",
         "sentence_prediction", "--arch", "roberta_l2_h128", "--num-classes", n_classes, "--max-positions", "64",
         "--shorten-method", "truncate", "--batch-size", "16", "--save-dir", tmp_path / "cls", *imp,
         "--ticket-control", "random-reinit", "--rewind-update", "0"])
    for name in ("mlm", "cls"):
        state = torch.load(tmp_path / name / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
        assert sparsity_in(state) == pytest.approx(RATE, abs=1e-3)
        assert sum(key.endswith(".0.rewind") for key in state) == len(masks_in(state))
        assert "encoder.sentence_encoder.embed_tokens.weight" in rewind_point_in(state)


@pytest.mark.parametrize("changes,message", [
    ({"imp_rounds": 0}, "--imp-rounds must be a positive integer, got 0"),
    ({"imp_rate": 1.5}, "--imp-rate must be in (0, 1), got 1.5"),
    ({"imp_rate": 0.0}, "--imp-rate must be in (0, 1), got 0.0"),
    ({"imp_round_updates": 0}, "--prune-schedule imp needs --imp-round-updates >= 1 (the updates of a round), got 0"),
    ({"rewind_update": 10}, "--rewind-update must be an update of the first round, in [0, --imp-round-updates=10), "
                            "got 10"),
    ({"ticket_control": "random-reinit"}, "--ticket-control random-reinit restarts from a fresh initialization "
                                          "(update 0): --rewind-update must be 0, got 2"),
    ({"max_update": 30}, "--prune-schedule imp trains --imp-rounds + 1 rounds of --imp-round-updates: "
                         "--max-update must be 40, got 30"),
    ({"prune_sparsity": 0.5}, "--prune-schedule imp sets the sparsity of round r to 1 - (1 - --imp-rate)^r: drop "
                              "--prune-sparsity 0.5"),
    ({"prune_granularity": "head"}, "--prune-schedule imp prunes single weights: --prune-granularity must be "
                                    "weight, got head"),
    ({"fp16": True}, "--prune-schedule imp trains in fp32: under --fp16 / --bf16 fairseq's fp32 master copy"),
    ({"prune_schedule": "oneshot", "ticket_control": "random-reinit"},
     "--ticket-control random-reinit is a lottery-ticket control: it needs --prune-schedule imp, got oneshot"),
])
def test_bad_imp_options(changes, message):
    check_options(imp_options())  # the base is valid
    with pytest.raises(ConfigError) as error:
        check_options(imp_options(**changes))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_bad_imp_input_stops_fairseq_train_in_one_line(mt_data, tmp_path):
    result = run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", *IMP, "--imp-rate", "1.5",
                             "--save-dir", tmp_path], check=False)
    assert one_line_error(result, "--imp-rate must be in (0, 1), got 1.5").startswith("error: ")
    assert not list(tmp_path.glob("*.pt"))
