"""Distillation: --criterion distillation (its loss against a hand computation, the teacher kept out of
training, exact resume, fp16, every task; two ranks: tests/test_ddp.py's table), fairseq-compress distill-data (sequence-level
KD data), the student archs' CTranslate2 export and the vocabulary map."""
import csv
import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import MOTS, ROOT, TRAIN_MLM, TRAIN_MT, WORDS, log_records, one_line_error, run, script
from test_deploy_ctranslate2 import check_same_translations, export
from test_resume import DUMPING, EVERY_FEATURE, assert_same_run, final_dump, kill_after_first_save


def kd_flags(teacher, inner="label_smoothed_cross_entropy", weight="0.5", temperature="2"):
    return ["--criterion", "distillation", "--kd-criterion", inner, "--teacher-path", teacher,
            "--kd-weight", weight, "--kd-temperature", temperature]


# --- the loss, in-process ----------------------------------------------------------------------------

@pytest.fixture
def student_and_teacher(mt_checkpoint, mt_data):
    """(student, teacher, task, inner criterion, a padded validation batch): the student is the teacher
    plus noise, in training mode with dropout off, so both forward passes below see one function."""
    from fairseq_compress.model_loading import load_model

    teacher, task, cfg = load_model(mt_checkpoint, mt_data)
    student, _, _ = load_model(mt_checkpoint, mt_data)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    student.train()
    for module in student.modules():
        if hasattr(module, "p") and isinstance(module.p, float):
            module.p = 0.0
    task.load_dataset("valid")
    sample = next(task.get_batch_iterator(task.dataset("valid"), max_tokens=512, seed=1).next_epoch_itr(shuffle=False))
    assert sample["target"].eq(task.target_dictionary.pad()).any(), "the batch needs padding for the test to mean anything"
    return student, teacher, task, task.build_criterion(cfg.criterion), sample


def distilled(inner, task, teacher, temperature, weight):
    from fairseq_compress.criterions.distillation import DistillationCriterion

    return DistillationCriterion.wrapping(inner, task, teacher, temperature, weight)


def test_loss_is_the_stated_mixture(student_and_teacher):
    """(1 - w) task loss + w T^2 sum over non-pad target tokens of KL(teacher || student)."""
    student, teacher, task, inner, sample = student_and_teacher
    loss, _, log = distilled(inner, task, teacher, temperature=2.0, weight=0.3)(student, sample)

    task_loss = inner(student, sample)[0]
    with torch.no_grad():
        s = F.softmax(student(**sample["net_input"])[0].double() / 2.0, -1)
        t = F.softmax(teacher(**sample["net_input"])[0].double() / 2.0, -1)
    target = sample["target"]
    kl = 0.0
    for b in range(target.size(0)):
        for i in range(target.size(1)):
            if target[b, i] != task.target_dictionary.pad():
                kl += 4.0 * float((t[b, i] * (t[b, i].log() - s[b, i].log())).sum())
    assert kl > 0
    assert float(log["kd_loss"]) == pytest.approx(kl, rel=1e-4)
    assert loss.item() == pytest.approx(0.7 * task_loss.item() + 0.3 * kl, rel=1e-4)


def test_kd_weight_zero_is_the_inner_criterion_exactly(student_and_teacher):
    student, teacher, task, inner, sample = student_and_teacher
    losses, grads = [], []
    for criterion in (inner, distilled(inner, task, teacher, temperature=2.0, weight=0.0)):
        student.zero_grad()
        loss = criterion(student, sample)[0]
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in student.parameters()])
    assert torch.equal(losses[0], losses[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_the_teacher_gets_no_gradient_and_is_no_part_of_the_criterion(student_and_teacher):
    student, teacher, task, inner, sample = student_and_teacher
    criterion = distilled(inner, task, teacher, temperature=1.0, weight=0.5)
    criterion(student, sample)[0].backward()
    assert list(criterion.parameters()) == [] and criterion.state_dict() == {}  # not optimized, wrapped or saved
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    assert any(p.grad is not None for p in student.parameters())


@pytest.mark.parametrize("compress", [["quantize", "--bits", "8"], ["shrink", "--heads-keep", "0.5", "--ffn-keep", "0.5"]],
                         ids=["int8-compressed", "shrunk"])
def test_compressed_and_shrunk_checkpoints_teach(student_and_teacher, mt_checkpoint, tmp_path, compress):
    from fairseq_compress.criterions.distillation import load_teacher

    student, _, task, inner, sample = student_and_teacher
    path = tmp_path / "teacher.pt"
    run(["fairseq-compress", *compress, "--path", mt_checkpoint, "--out", path])
    teacher = load_teacher(str(path), task)
    loss, _, log = distilled(inner, task, teacher, temperature=1.0, weight=0.5)(student, sample)
    assert torch.isfinite(loss) and log["kd_loss"] > 0


def test_validation_reports_the_inner_loss(student_and_teacher):
    student, teacher, task, inner, sample = student_and_teacher
    student.eval()
    loss, _, log = distilled(inner, task, teacher, temperature=2.0, weight=0.5)(student, sample)
    assert torch.equal(loss, inner(student, sample)[0]) and "kd_loss" not in log


# --- fairseq-train --------------------------------------------------------------------------------------

def test_a_student_trains_with_update_freq_and_its_checkpoint_holds_no_teacher(mt_checkpoint, mt_data, tmp_path):
    result = run(TRAIN_MT + [mt_data, "--arch", "transformer_e3d1_h128", *kd_flags(mt_checkpoint), "--max-update", "6",
                             "--update-freq", "2", "--log-interval", "1", "--log-format", "json",
                             "--save-dir", tmp_path])
    train = log_records(result.stdout + result.stderr, "train")
    assert train and all(math.isfinite(r["kd_loss"]) and r["kd_loss"] > 0 for r in train)
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    layers = {key.split(".")[2] for key in state["model"] if key.startswith("decoder.layers.")}
    assert layers == {"0"}  # the student's one decoder layer; the teacher has two
    assert state.get("criterion") is None  # fairseq saves a criterion only when it has parameters
    n_student_tensors = len([k for k in state["model"] if not k.endswith("_float_tensor") and "version" not in k])
    assert len(state["last_optimizer_state"]["state"]) <= n_student_tensors
    assert state["cfg"]["criterion"]["teacher_path"] == str(mt_checkpoint)


def test_kill_9_then_rerun_is_exact_with_pruning_drophead_and_quant_noise(mt_checkpoint, mt_data, tmp_path):
    """Distilling while pruning, with DropHead and quant-noise on (the inner criterion): one run composes them all."""
    cmd = DUMPING + TRAIN_MT[1:] + [mt_data, "--arch", "transformer_l2_h128", "--task", "translation_pruning",
                                    *EVERY_FEATURE, *kd_flags(mt_checkpoint, inner="quant_noise"),
                                    "--qn-criterion", "label_smoothed_cross_entropy"]
    run(cmd + ["--save-dir", tmp_path / "whole"])
    assert kill_after_first_save(cmd + ["--save-dir", tmp_path / "killed"], tmp_path / "killed", 0.3), \
        "the run ended before it could be killed"
    run(cmd + ["--save-dir", tmp_path / "killed"])
    assert_same_run(final_dump(tmp_path / "killed"), final_dump(tmp_path / "whole"))


def test_fp16_on_cpu_runs_the_teacher_in_the_students_dtype(mt_checkpoint, mt_data, tmp_path):
    result = run(TRAIN_MT + [mt_data, "--arch", "transformer_e3d1_h128", *kd_flags(mt_checkpoint), "--max-update", "4",
                             "--fp16", "--fp16-no-flatten-grads", "--log-interval", "1", "--log-format", "json",
                             "--save-dir", tmp_path])
    train = log_records(result.stdout + result.stderr, "train")
    assert train[-1]["num_updates"] == 4 and math.isfinite(train[-1]["kd_loss"])
    assert "loss_scale" in train[-1]  # fairseq's fp16 path ran


def test_the_teacher_runs_in_the_students_dtype(student_and_teacher):
    from fairseq_compress.criterions.distillation import FrozenTeacher

    student, teacher, _, _, sample = student_and_teacher
    logits = FrozenTeacher(teacher)(student.half(), (), sample["net_input"])[0]
    assert logits.dtype == torch.float16 and all(p.dtype == torch.float16 for p in teacher.parameters())
    assert torch.isfinite(logits).all()


def test_logit_kd_for_classification_and_soft_targets_for_masked_lm(mlm_data, tmp_path):
    """A roberta_l2_h256 teacher, roberta_l2_h128 students: MLM pretraining with DistilBERT's soft-target
    loss on the masked positions, then classification fine-tuning on the teacher's class logits; the
    student exports to transformers as any plugin RoBERTa."""
    en_bin, cls_bin = mlm_data
    mlm = [*TRAIN_MLM, "--task", "masked_lm", "--tokens-per-sample", "64", "--max-tokens", "1024",
           "--log-format", "json"]
    run(["fairseq-train", en_bin, *mlm, "--arch", "roberta_l2_h256", "--criterion", "masked_lm", "--max-update", "4",
         "--save-dir", tmp_path / "mlm_teacher"])
    result = run(["fairseq-train", en_bin, *mlm, "--arch", "roberta_l2_h128", "--max-update", "4",
                  *kd_flags(tmp_path / "mlm_teacher/checkpoint_last.pt", inner="masked_lm"),
                  "--save-dir", tmp_path / "mlm_student"])
    assert all(r["kd_loss"] > 0 for r in log_records(result.stdout + result.stderr, "train"))

    n_classes = len((cls_bin / "label/dict.txt").read_text().splitlines())
    cls = [cls_bin, *TRAIN_MLM, "--task", "sentence_prediction", "--num-classes", n_classes, "--max-positions", "512",
           "--batch-size", "16", "--log-format", "json", "--max-update", "4"]
    run(["fairseq-train", *cls, "--arch", "roberta_l2_h256", "--criterion", "sentence_prediction",
         "--save-dir", tmp_path / "cls_teacher"])
    result = run(["fairseq-train", *cls, "--arch", "roberta_l2_h128", "--save-dir", tmp_path / "cls_student",
                  *kd_flags(tmp_path / "cls_teacher/checkpoint_last.pt", inner="sentence_prediction")])
    train = log_records(result.stdout + result.stderr, "train")
    assert all(r["kd_loss"] > 0 for r in train) and "accuracy" in train[-1]
    run(["fairseq-compress", "export", "--format", "transformers", "--path", tmp_path / "cls_student/checkpoint_last.pt",
         "--out", tmp_path / "hf"])
    assert (tmp_path / "hf" / "config.json").exists()


def test_bad_input_is_refused_before_training(mt_checkpoint, mt_data, word_mt, tmp_path):
    base = TRAIN_MT + [mt_data, "--arch", "transformer_e3d1_h128", "--max-update", "2", "--save-dir", tmp_path / "s"]
    cases = [
        (kd_flags(tmp_path / "nope.pt"), ["--teacher-path", "nope.pt", "no such file"]),
        (["--criterion", "distillation"], ["needs --teacher-path"]),
        (kd_flags(mt_checkpoint, weight="1.5"), ["--kd-weight must be in [0, 1], got 1.5"]),
        (kd_flags(mt_checkpoint, temperature="0"), ["--kd-temperature must be > 0, got 0.0"]),
        (kd_flags(mt_checkpoint, inner="electra"), ["--kd-criterion must be one of", "got electra"]),
        (kd_flags(word_mt[1]), ["--teacher-path", "another source dictionary", "share their dictionaries"]),
    ]
    for flags, fragments in cases:
        one_line_error(run(base + flags, check=False), *fragments)
    assert not list(tmp_path.glob("s/*.pt"))


# --- fairseq-compress distill-data ------------------------------------------------------------------------

def spm_pieces(data, path):
    import sentencepiece

    spm = sentencepiece.SentencePieceProcessor(model_file=str(data / "spm.model"))
    return [" ".join(spm.encode(line.rstrip("\n"), out_type=str)) for line in path.read_text().splitlines()]


def test_distill_data_resumes_by_shard_and_keeps_every_line_in_order(word_mt, tmp_path, monkeypatch):
    """word_mt's teacher translates its training sentences perfectly: the distilled targets must be
    the references, line for line, after a run killed in its third shard and resumed."""
    from fairseq_compress.compress import sequence_kd

    data, teacher = word_mt
    out = tmp_path / "kd"
    translated = []
    make_translate = sequence_kd.fairseq_translate

    def failing_in_the_third_shard(*args, **kwargs):
        translate = make_translate(*args, **kwargs)

        def counted(sources):
            if len(translated) == 2:
                raise KeyboardInterrupt  # what a kill leaves: two shards done, the third not
            translated.append(len(sources))
            return translate(sources)
        return counted

    monkeypatch.setattr(sequence_kd, "fairseq_translate", failing_in_the_third_shard)
    with pytest.raises(KeyboardInterrupt):
        sequence_kd.distill_data(str(teacher), str(data), str(out), beam=1, shard_size=150)
    assert not out.exists() and len(list((tmp_path / "kd.partial/shards").iterdir())) == 2
    monkeypatch.setattr(sequence_kd, "fairseq_translate", make_translate)
    report = sequence_kd.distill_data(str(teacher), str(data), str(out), beam=1, shard_size=150)
    assert report["sentences"] == 400 and translated == [150, 150]
    targets = (out / "text/train.fr").read_text().splitlines()
    raw = data.parent / "raw"  # what word_mt prepared its data-bin from
    assert targets == spm_pieces(data, raw / "train.fr")
    assert (out / "text/train.en").read_text().splitlines() == spm_pieces(data, raw / "train.en")
    for name in ("valid.en-fr.fr.bin", "test.en-fr.en.bin", "dict.fr.txt", "spm.model", "raw/test.fr"):
        assert (out / name).read_bytes() == (data / name).read_bytes(), name
    assert (out / "train.en-fr.en.bin").read_bytes() == (data / "train.en-fr.en.bin").read_bytes()


def test_a_ctranslate2_teacher_writes_the_same_data_and_a_student_trains_on_it(word_mt, tmp_path):
    data, teacher = word_mt
    run(["fairseq-compress", "distill-data", "--teacher", teacher, "--data", data, "--out", tmp_path / "kd"])
    ct2 = export(teacher, data, tmp_path / "ct2")
    result = run(["fairseq-compress", "distill-data", "--teacher", ct2, "--data", data, "--out", tmp_path / "kd_ct2"])
    assert json.loads(result.stdout.splitlines()[-1])["sentences"] == 400
    assert "sent/s" in result.stderr  # the progress bar
    for name in ("train.en-fr.fr.bin", "train.en-fr.fr.idx"):
        assert (tmp_path / "kd_ct2" / name).read_bytes() == (tmp_path / "kd" / name).read_bytes()
    run(TRAIN_MT + [tmp_path / "kd_ct2", "--arch", "transformer_e3d1_h128", "--max-update", "2",
                    "--save-dir", tmp_path / "student"])


def test_distill_data_bad_input(word_mt, mt_checkpoint, tmp_path):
    data, teacher = word_mt
    base = ["fairseq-compress", "distill-data", "--data", data]
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    one_line_error(run(base + ["--teacher", teacher, "--out", existing], check=False), "--out", "exists")
    assert (existing / "keep.txt").read_text() == "mine"
    one_line_error(run(base + ["--teacher", tmp_path / "nope.pt", "--out", tmp_path / "a"], check=False),
                   "--teacher", "no such checkpoint file or CTranslate2 directory")
    one_line_error(run(base + ["--teacher", mt_checkpoint, "--out", tmp_path / "b"], check=False),
                   "--teacher", "share their dictionaries")
    no_spm = export(teacher, data, tmp_path / "ct2")
    (no_spm / "spm.model").unlink()
    one_line_error(run(base + ["--teacher", no_spm, "--out", tmp_path / "c"], check=False),
                   "--teacher", "has no spm.model")
    one_line_error(run(base + ["--teacher", teacher, "--out", tmp_path / "d", "--beam", "0"], check=False),
                   "--beam must be a positive integer")
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c", "d", "a.partial", "b.partial", "c.partial"))


# --- students and the vocabulary map under CTranslate2 ----------------------------------------------------

def test_a_student_exports_to_ctranslate2_with_fairseqs_greedy_translations(word_mt, tmp_path):
    data, _ = word_mt
    run(TRAIN_MT + [data, "--arch", "transformer_e3d1_h128", "--max-update", "30", "--save-dir", tmp_path / "student"])
    student = tmp_path / "student/checkpoint_last.pt"
    check_same_translations(data, student, export(student, data, tmp_path / "ct2"))


def test_the_vocabulary_map_pairs_each_word_with_its_translation_and_translates(word_mt, tmp_path):
    data, teacher = word_mt
    out = export(teacher, data, tmp_path / "ct2", "--vmap", "--vmap-top-k", "3", "--vmap-frequent", "5")
    lines = (out / "vmap.txt").read_text().splitlines()
    always, rules = lines[0].split("\t"), dict(line.split("\t") for line in lines[1:])
    assert always[0] == "" and len(always[1].split()) == 5
    translation = dict(zip(WORDS, MOTS))
    assert {source: targets.split()[0] for source, targets in rules.items()} == \
        {f"▁{word}": f"▁{translation[word]}" for word in WORDS}
    assert all(len(targets.split()) == 3 for targets in rules.values())
    scores = [json.loads(run(script("eval_bleu.sh") + [out, data, "--json", *vmap]).stdout.splitlines()[-1])
              for vmap in ([], ["--vmap"])]
    assert scores[0]["bleu"] > 90 and abs(scores[1]["bleu"] - scores[0]["bleu"]) < 2
    plain = export(teacher, data, tmp_path / "plain")
    one_line_error(run(script("eval_bleu.sh") + [plain, data, "--vmap"], check=False), "--vmap", "has none")


def test_vmap_benchmark_races_with_and_without_the_map(word_mt, tmp_path):
    data, teacher = word_mt
    out = run([sys.executable, "-m", "fairseq_compress.benchmarks.vmap_speed", "--ckpt", teacher, "--data", data,
               "--out", tmp_path / "bench", "--maps", "3:5", "--beams", "1", "--repeats", "1",
               "--csv", tmp_path / "vmap.csv"]).stdout
    assert "beam 1, no vmap: BLEU" in out and "beam 1, vmap 3:5: BLEU" in out
    with open(tmp_path / "vmap.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["contender"] for r in rows] == ["no vmap", "vmap 3:5"] and rows[0]["speed_vs_no_vmap"] == "1.0"
