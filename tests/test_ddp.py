"""Data-parallel training on CPU through torchrun (gloo), every plugin component: each trains on
two ranks with validation, a saved checkpoint and a resume, and the ranks stay identical."""
import json
import re
import shutil
import socket
import subprocess

import pytest
import torch

import fairseq_compress  # noqa: F401  the safe globals of fairseq checkpoints (torch.load weights_only)
from fairseq_compress.models.electra import GENERATOR_PREFIX
from conftest import ELECTRA_PRETRAIN, ROOT, TRAIN_MLM, TRAIN_MT, cli_shims, command_env, run, write_shim

LAUNCH = ["bash", ROOT / "scripts/train_ddp_cpu.sh", "2", "--"]
DUMPING_SCRIPT = ROOT / "tests/train_dumping_ranks.py"
SAVES = ["--max-update", "4", "--save-interval-updates", "2", "--log-interval", "1", "--log-format", "simple"]
RESUMED = ["--max-update", "6"]  # the later flag wins: two more updates from checkpoint_last.pt
NO_DROPOUT = ["--dropout", "0", "--attention-dropout", "0"]  # nothing random: two ranks = one rank, --update-freq 2
GRADUAL = ["--prune-sparsity", "0.5", "--prune-schedule", "gradual", "--prune-start-update", "1",
           "--prune-end-update", "5", "--prune-frequency", "1"]
MT = ["--arch", "transformer_l2_h128", "--max-tokens", "1024"]
MLM = ["--arch", "roberta_l2_h128", "--tokens-per-sample", "64", "--max-tokens", "1024", "--random-token-prob", "0",
       "--warmup-updates", "1"]


def train_args(tool):
    """TRAIN_MT without its leading fairseq-train: the launcher runs the trainer."""
    assert tool[0] == "fairseq-train"
    return tool[1:]


@pytest.fixture(scope="module")
def dumping(tmp_path_factory):
    """The environment that makes each rank run tests/train_dumping_ranks.py, through this
    worker's pre-imported server when it runs."""
    if cli_shims()[0] is None:
        return {"FAIRSEQ_TRAIN": str(DUMPING_SCRIPT)}
    shim = tmp_path_factory.mktemp("dumping") / "train_dumping_ranks"
    write_shim(shim, DUMPING_SCRIPT)
    return {"FAIRSEQ_TRAIN": str(shim)}


def rank_dumps(save_dir):
    dumps = {}
    for rank in (0, 1):
        files = sorted((save_dir / f"rank{rank}").glob("*.pt"), key=lambda p: int(p.stem))
        dumps[rank] = {int(f.stem): torch.load(f, weights_only=True) for f in files}
    return dumps


def assert_ranks_identical(save_dir, saves):
    """Both ranks saved at the same updates, `saves` (any, when None), with bitwise-equal parameters,
    pruning masks, layer gates, weights seen by the forward pass and DropHead rates; returns rank 0's dumps."""
    dumps = rank_dumps(save_dir)
    assert dumps[0] and sorted(dumps[0]) == sorted(dumps[1]) == (saves or sorted(dumps[0]))
    for update in dumps[0]:
        zero, one = dumps[0][update], dumps[1][update]
        assert zero["drophead_p"] == one["drophead_p"]
        for part in ("model", "seen_weights"):
            assert zero[part].keys() == one[part].keys()
            for key, value in zero[part].items():
                assert torch.equal(value, one[part][key]), (update, key)
    return dumps[0]


def last_update(save_dir):
    return torch.load(save_dir / "checkpoint_last.pt", weights_only=True)["optimizer_history"][-1]["num_updates"]


def read_points(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_pruned(state, suffix):
    """Some of the buffers ending in `suffix` (masks, layer gates) hold zeros."""
    assert any(not value.all() for key, value in state.items() if key.endswith(suffix)), suffix


# --- what each component adds to the common checks, on rank 0's dumps ------------------------------

def stopped_on_time(save_dir, dumps, log):
    """Stopped by the time budget, both ranks at the same update, where the curve ends; the
    resumed run (its budget spent) trained one more update."""
    points = read_points(save_dir / "curve.jsonl")
    stop = max(dumps)
    assert points[-1]["updates"] == stop == last_update(save_dir) and points[-2]["updates"] == stop - 1
    assert len(points) >= 3 and all(p["tokens"] > 0 and isinstance(p["flops"], int) for p in points)
    assert all(p > 0 for p in dumps[stop]["drophead_p"])


def electra_curve(save_dir, dumps, log):
    assert [p["updates"] for p in read_points(save_dir / "curve.jsonl")] == [2, 4, 6]
    assert any(key.startswith(GENERATOR_PREFIX) for key in dumps[6]["model"])
    assert "disc_acc" in log and "qn_scalar" in log


def every_granularity(save_dir, dumps, log):
    assert_pruned(dumps[6]["model"], ".mask")
    assert_pruned(dumps[6]["model"], ".prune_layer_kept")


def gradient_scores(save_dir, dumps, log):
    assert_pruned(dumps[6]["model"], ".mask")


def qat_noise_and_drophead(save_dir, dumps, log):
    assert_pruned(dumps[6]["model"], ".mask")
    fc2 = [w for name, w in dumps[6]["seen_weights"].items() if name.endswith("fc2")]  # rows of 512 weights
    assert fc2 and all(len(row.unique()) <= 15 for w in fc2 for row in w)  # 4-bit levels: -7..7 x row scale
    assert "qn_pq" in log and all(p > 0 for p in dumps[6]["drophead_p"])


def distilled(save_dir, dumps, log):
    assert "kd_loss" in log
    assert not any(key.startswith("decoder.layers.1.") for key in dumps[6]["model"])  # the student's, not the teacher's


def cls_task(cls_bin):
    n_classes = len((cls_bin / "label/dict.txt").read_text().splitlines())
    return ["--task", "sentence_prediction_pruning", "--arch", "roberta_l2_h128", "--num-classes", str(n_classes),
            "--max-positions", "64", "--shorten-method", "truncate", "--batch-size", "16", "--warmup-updates", "1"]


# (id, data, flags after the common ones, the updates both ranks save at (None: whenever the
# budget stops), the component's checks, whether one rank with --update-freq 2 must match)
COMPONENTS = [
    ("translation_timed+drophead", "mt", ["--task", "translation_timed", "--stop-time-minutes", "0.05",
                                          "--validate-interval-seconds", "1", "--max-update", "100000",
                                          "--save-interval-updates", "0",
                                          "--drophead-p", "0.2", "--drophead-schedule", "constant", *MT],
     None, stopped_on_time, False),
    ("masked_lm_timed+electra+qn_scalar", "mlm", [*ELECTRA_PRETRAIN, "--task", "masked_lm_timed", "--warmup-updates",
                                                  "1", "--criterion", "quant_noise", "--qn-criterion", "electra",
                                                  "--qn-scalar", "0.1"],
     [2, 4, 6], electra_curve, False),
    ("translation_pruning+weight,head,neuron,layer", "mt",
     ["--task", "translation_pruning", "--prune-granularity", "weight,head,neuron,layer", *GRADUAL, *MT, *NO_DROPOUT],
     [2, 4, 6], every_granularity, True),
    ("masked_lm_pruning+gradient", "mlm", ["--task", "masked_lm_pruning", "--criterion", "masked_lm",
                                           "--prune-granularity", "head,neuron", "--prune-score", "gradient",
                                           *GRADUAL, *MLM, *NO_DROPOUT],
     [2, 4, 6], gradient_scores, True),
    ("sentence_prediction_pruning+qat+qn_pq+drophead", "cls",
     ["--prune-sparsity", "0.5", "--prune-start-update", "2", "--qat-bits", "4", "--criterion", "quant_noise",
      "--qn-criterion", "sentence_prediction", "--qn-pq", "0.1", "--drophead-p", "0.2"],
     [2, 4, 6], qat_noise_and_drophead, False),
    ("translation+distillation", "mt_kd", ["--arch", "transformer_e3d1_h128", "--max-tokens", "1024", *NO_DROPOUT,
                                           "--criterion", "distillation", "--kd-criterion",
                                           "label_smoothed_cross_entropy", "--kd-temperature", "2"],
     [2, 4, 6], distilled, True),
]


def data_args(kind, request):
    if kind == "mt":
        return [request.getfixturevalue("mt_data"), *train_args(TRAIN_MT)]
    if kind == "mt_kd":  # the teacher of --criterion distillation: the suite's trained transformer_l2_h128
        return [*data_args("mt", request), "--teacher-path", request.getfixturevalue("mt_checkpoint")]
    en_bin, cls_bin = request.getfixturevalue("mlm_data")
    return [en_bin, *TRAIN_MLM] if kind == "mlm" else [cls_bin, *TRAIN_MLM, *cls_task(cls_bin)]


@pytest.mark.parametrize("kind, flags, saves, check, matches_one_rank",
                         [case[1:] for case in COMPONENTS], ids=[case[0] for case in COMPONENTS])
def test_component_on_two_ranks_validates_saves_and_resumes(kind, flags, saves, check, matches_one_rank,
                                                            request, dumping, tmp_path):
    save_dir = tmp_path / "two"
    command = LAUNCH + data_args(kind, request) + SAVES + flags + ["--save-dir", save_dir]
    first = run(command, env=dumping)
    resumed = run(command + ([] if saves is None else RESUMED), env=dumping)
    for result in (first, resumed):
        log = result.stdout + result.stderr
        assert "distributed init (rank 1)" in log and "valid on 'valid' subset" in log
    assert re.search(r"Loaded checkpoint \S+checkpoint_last\.pt \(epoch \d+ @ \d+ updates\)",
                     resumed.stdout + resumed.stderr)
    assert torch.load(save_dir / "checkpoint_last.pt", weights_only=True)["cfg"]["distributed_training"][
        "distributed_world_size"] == 2
    dumps = assert_ranks_identical(save_dir, saves)
    check(save_dir, dumps, first.stdout + first.stderr + resumed.stdout + resumed.stderr)
    if matches_one_rank:  # the same batches, summed on one rank, in one run
        one = tmp_path / "one"
        run(["fairseq-train", *data_args(kind, request), *SAVES, *flags, *RESUMED, "--cpu", "--update-freq", "2",
             "--save-dir", one])
        two_rank, one_rank = (torch.load(d / "checkpoint_last.pt", weights_only=True)["model"] for d in (save_dir, one))
        assert two_rank.keys() == one_rank.keys()
        for key in one_rank:
            if one_rank[key].dtype == torch.bool:  # masks and layer gates
                assert torch.equal(two_rank[key], one_rank[key]), key
            else:
                torch.testing.assert_close(two_rank[key], one_rank[key], atol=2e-5, rtol=1e-4, msg=key)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*launcher_flags):
    """torchrun as users start it, running fairseq-train (through this worker's server when it runs)."""
    return ["torchrun", *launcher_flags, shutil.which("fairseq-train", path=command_env()["PATH"])]


def test_two_nodes_of_one_process_each(mt_data, dumping, tmp_path):
    rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                  "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "two-nodes"]
    command = [str(c) for c in ["torchrun", *rendezvous, dumping["FAIRSEQ_TRAIN"], mt_data, *train_args(TRAIN_MT), *MT,
                                "--max-update", "2", "--save-dir", tmp_path, "--cpu", "--distributed-backend", "gloo",
                                "--ddp-backend", "legacy_ddp"]]
    nodes = [subprocess.Popen(command, env=command_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    logs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert_ranks_identical(tmp_path, [2])
    assert torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)["cfg"]["distributed_training"][
        "distributed_world_size"] == 2


def test_torchrun_world_size_disagreement_is_refused(mt_data, tmp_path):
    result = run(torchrun("--standalone", "--nproc-per-node", "2") + [
        mt_data, *train_args(TRAIN_MT), *MT, "--cpu", "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp",
        "--distributed-world-size", "4", "--save-dir", tmp_path], check=False)
    line = ("error: --distributed-world-size 4 disagrees with the launcher's WORLD_SIZE=2: drop the flag (the launcher "
            "sets the world) or start 4 processes")
    output = result.stdout + result.stderr
    # every rank refuses before any work; torchrun may stop the second before it prints
    assert result.returncode != 0 and line + "\n" in output
    assert "distributed init" not in output and not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, fragment", [
    (["0", "--", "data"], "NPROC must be a positive integer, got '0'"),
    (["2"], "give the fairseq-train arguments after --"),
])
def test_launcher_bad_input(args, fragment):
    result = run(["bash", ROOT / "scripts/train_ddp_cpu.sh", *args], check=False)
    assert result.returncode == 2 and fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_failing_rank_stops_the_launch(mt_data, tmp_path):
    result = run(LAUNCH + train_args(TRAIN_MT) + [mt_data, *MT, "--drophead-p", "1.5", "--save-dir", tmp_path],
                 check=False)
    assert result.returncode != 0 and "error: --drophead-p must be in [0, 1), got 1.5" in result.stderr
    assert not list(tmp_path.iterdir())
