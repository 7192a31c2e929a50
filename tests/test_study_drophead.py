"""The DropHead study (translation and classification): each smoke configuration end to end on tiny data,
the CSV's rows and columns, a rerun that trains nothing; its bad input."""
import csv

import pytest

from conftest import RAW, ROOT, file_times, head_lines, write_parallel
from fairseq_compress.studies import drophead


DROPHEAD_CONFIGS = ROOT / "fairseq_compress/studies/configs"


def drophead_raw(raw, task):
    """RAW of the study's task: en_fr (the suite's word-for-word pairs), or slices of the shipped en and cls."""
    if task == "mt":
        write_parallel(raw / "en_fr")
        return []
    (raw / "en").mkdir(parents=True)
    (raw / "cls").mkdir()
    head_lines(RAW / "en/train.txt.gz", raw / "en/train.txt", 1500)
    head_lines(RAW / "en/valid.txt.gz", raw / "en/valid.txt", 50)
    for split, n in (("train", 200), ("dev", 100), ("test", 100)):
        head_lines(RAW / f"cls/{split}.tsv.gz", raw / f"cls/{split}.tsv", n + 1)
    return [f"cls.mlm_data={raw.parent / 'en-bin'}"]


@pytest.mark.parametrize("task", ["mt", "cls"])
def test_drophead_study_smoke(task, study, tmp_path):
    args = ["--config", DROPHEAD_CONFIGS / f"drophead_{task}_smoke.yaml", f"raw={tmp_path / 'raw'}",
            f"out={tmp_path / 'study'}", f"csv={tmp_path / 'dh.csv'}", *drophead_raw(tmp_path / "raw", task)]
    printed = study.run(drophead, args)
    with open(tmp_path / "dh.csv") as f:
        rows = list(csv.DictReader(f))
    metrics = ["bleu", "best_valid_loss", "best_update", "valid_loss_rise"] if task == "mt" else \
        ["accuracy", "dev_accuracy"]
    assert list(rows[0]) == ["config", "seed", *metrics]
    # DropHead on top of the tuned baseline: lowest best valid loss (mt) / highest dev accuracy (cls)
    pick = {r["config"]: float(r[metrics[1]]) for r in rows[:2]}
    best = (min if task == "mt" else max)(pick, key=pick.get)
    assert [(r["config"], r["seed"]) for r in rows] == \
        [("dropout 0.1", "1"), ("dropout 0.3", "1"), (f"{best} + DropHead v p0.1", "1"), (f"{best} + DropHead v p0.2", "1")]
    assert all(0 <= float(r[metrics[0]]) <= 100 for r in rows) and "| dropout 0.3 | 1 |" in printed
    # the bash studies' layout: WORK/{raw,bin}, WORK/<config>/seed<S> with its stamp files
    work = tmp_path / "study" / ("pairs200_valid10" if task == "mt" else "examples64")
    stamps = ["valid.json", "bleu.json"] if task == "mt" else ["accuracy.json"]
    best_dir = best.replace(" ", "")
    runs = ["dropout0.1", "dropout0.3", f"{best_dir}_v_p0.1", f"{best_dir}_v_p0.2"]
    assert all((work / name / "seed1" / stamp).is_file() for name in runs for stamp in stamps)
    assert len((work / "raw/train.en" if task == "mt" else work / "raw/train.tsv").read_text().splitlines()) == \
        (200 if task == "mt" else 65)  # cls: the header line too
    # the study's recipe reached the trainings: each run's dropout, DropHead on top only
    for name in runs:
        command = (work / name / "seed1/.train_command").read_text()
        assert f"--dropout {best.split()[1] if '_v_' in name else name[7:]} " in command
        assert ("--drophead-p 0.2 --drophead-schedule v" in command) == name.endswith("_v_p0.2")
        assert ('"train_drophead_p"' in (work / name / "seed1/train.log").read_text()) == ("_v_" in name)
    if task == "mt":
        assert all(r["best_update"] in ("4", "8", "12") for r in rows)  # a validation every 4 updates
        curves = list(csv.DictReader(open(tmp_path / "dh_valid_loss.csv")))
        assert [(c["config"], c["seed"], c["num_updates"]) for c in curves[:3]] == \
            [("dropout 0.1", "seed1", str(u)) for u in (4, 8, 12)] and len(curves) == 12
        assert (tmp_path / "dh_valid_loss.png").stat().st_size > 10_000
    else:
        assert (tmp_path / "study/pretrain/checkpoint_last.pt").is_file()

    before, table = file_times(tmp_path / "study"), (tmp_path / "dh.csv").read_text()
    (tmp_path / "dh.csv").unlink()
    study.run(drophead, args)  # every stage reused: no file under OUT written again
    assert file_times(tmp_path / "study") == before and (tmp_path / "dh.csv").read_text() == table


def test_drophead_study_bad_input(study, tmp_path):
    """Each bad value stops the study with one line before any work: on the command line once, then in-process."""
    where = [f"raw={ROOT / 'data-bin/raw'}", f"out={tmp_path / 'study'}", f"csv={tmp_path / 'x.csv'}"]
    bad = [(["dropouts=[0.1,1.5]"], ["dropouts: each must be in [0, 1), got 1.5"]),
           (["drophead_p=[0.1,1.5]"], ["drophead_p: each must be in (0, 1), got 1.5"]),
           (["task=cls", "cls.train_examples=0"], ["cls.train_examples must be a positive integer, got 0"]),
           (["mt.valid_pairs=0"], ["mt.valid_pairs must be a positive integer, got 0"]),
           (["task=lm"], ["task must be mt or cls, got 'lm'"]),
           (["raw=/nope"], ["raw=/nope: missing en_fr/train.en (or train.en.gz)"]),
           (["mt.arch=roberta_l2_h128"], ["mt.arch roberta_l2_h128 is not a registered mt architecture"]),
           (["task=cls", f"cls.pretrained={tmp_path / 'none.pt'}"], ["cls.pretrained: no such checkpoint", "none.pt"]),
           (["task=cls"], ["task=cls", "drophead_mt_smoke.yaml is the mt study's config"])]
    study.command_line_error(drophead, where + bad[0][0], *bad[0][1])
    for args, fragments in bad[1:]:
        config = ["--config", DROPHEAD_CONFIGS / "drophead_mt_smoke.yaml"] if args == ["task=cls"] else []
        study.error(drophead, config + where + args, *fragments)
    assert not (tmp_path / "study").exists()
