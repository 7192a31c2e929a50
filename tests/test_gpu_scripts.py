"""The GPU-machine scripts, checked where there is no GPU: syntax, the one-line refusals
without CUDA, gpu_check.sh's rehearsal (its env stage reusing a venv, its summaries, its
refusals), the benchmark's CPU path and CSV, and its fairseq-style fp16 update. The full
rehearsal with the GPU image's versions is in docs/mixed_precision.md (too slow for the suite)."""
import csv
import re
import sys
import time

import pytest
import torch
from conftest import ROOT, run

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
BENCH = ["-m", "fairseq_compress.benchmarks.train_throughput"]


@pytest.mark.parametrize("script", ["gpu_check.sh", "gpu_wheels.sh"])
def test_script_syntax(script):
    run(["bash", "-n", ROOT / "scripts" / script])


@no_cuda
def test_gpu_check_refuses_without_cuda_before_anything_else(tmp_path):
    log = ROOT / "docs/results/gpu_check.txt"
    before = log.stat().st_mtime_ns if log.exists() else None
    result = run(["bash", ROOT / "scripts/gpu_check.sh"], check=False, env={"GPU_VENV": str(tmp_path / "venv")})
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert len(output.splitlines()) == 1 and "CUDA is missing" in output, output
    assert not (tmp_path / "venv").exists()
    assert (log.stat().st_mtime_ns if log.exists() else None) == before


def gpu_check(tmp_path, *args, venv, cap_env=None):
    """scripts/gpu_check.sh ARGS with this venv's python as the image's python3, logging to tmp_path."""
    log = tmp_path / "gpu_check.txt"
    env = {"GPU_CHECK_PYTHON": sys.executable, "GPU_VENV": str(venv), "GPU_CHECK_LOG": str(log),
           **({"GPU_CHECK_CAP_ENV": cap_env} if cap_env else {})}
    result = run(["bash", ROOT / "scripts/gpu_check.sh", *args], check=False, env=env)
    return result, result.stdout.splitlines(), log.read_text() if log.exists() else ""


def test_rehearsed_env_stage_reuses_an_environment_that_imports_fairseq(tmp_path):
    """The venv of a first try (here: the one running the tests) is reused, not rebuilt; the
    stage and the run end in one-line summaries, which the log holds too."""
    result, lines, log = gpu_check(tmp_path, "--rehearse", "--stage", "env", venv=sys.prefix)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"gpu_check: reusing {sys.prefix}, which imports fairseq and fairseq_compress" in lines
    assert re.fullmatch(r"gpu_check: env: passed in \d+ s", lines[-3])
    assert lines[-2] == "gpu_check: all stages passed (--stage env)"
    assert re.fullmatch(r"gpu_check: exit 0 after \d+ s", lines[-1])
    assert log.splitlines()[-3:] == lines[-3:] and "== tests" not in log


def test_a_failed_stage_says_so_and_skips_what_needs_it_in_the_tail(tmp_path):
    """A folder that is no venv of this script is refused in one line, not deleted; the tail alone
    tells each stage's fate."""
    foreign = tmp_path / "someones_venv"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    result, lines, _ = gpu_check(tmp_path, "--rehearse", venv=foreign)
    assert result.returncode == 1
    assert f"gpu_check: {foreign} exists, was not made by this script and does not import fairseq: set GPU_VENV" in lines
    assert lines[-6:] == ["gpu_check: cuda: skipped (rehearsal)", lines[-5], "gpu_check: tests: skipped (env failed)",
                          "gpu_check: throughput: skipped (env failed)", "gpu_check: FAILED", lines[-1]]
    assert re.fullmatch(r"gpu_check: env: FAILED \(exit 1\) in \d+ s", lines[-5])
    assert (foreign / "keep.txt").read_text() == "mine"
    # a stage run alone that needs the env says which stage to run first
    result, lines, _ = gpu_check(tmp_path, "--rehearse", "--stage", "tests", venv=tmp_path / "none")
    assert f"gpu_check: {tmp_path / 'none'} does not import fairseq and fairseq_compress: run --stage env first" in lines
    assert re.fullmatch(r"gpu_check: tests: FAILED \(exit 1\) in \d+ s", lines[-3])


def test_a_stage_past_its_cap_is_stopped_and_says_so(tmp_path):
    """A hung stage ends at its cap (GPU_CHECK_CAP_ENV here, 120 s by default), so the call that
    runs the check outlives it and reports; the stages that need it are skipped."""
    hung = tmp_path / "hung"
    (hung / "bin").mkdir(parents=True)
    (hung / "bin/python").write_text("#!/bin/sh\nsleep 60\n")
    (hung / "bin/python").chmod(0o755)
    start = time.monotonic()
    result, lines, _ = gpu_check(tmp_path, "--rehearse", venv=hung, cap_env="2")
    assert time.monotonic() - start < 30 and result.returncode == 1
    assert re.fullmatch(r"gpu_check: env: TIMED OUT at its 2 s cap in [23] s", lines[-5]), result.stdout[-2000:]
    assert lines[-4] == "gpu_check: tests: skipped (env failed)"


@pytest.mark.parametrize("args", [["--stage", "nonsense"], ["--stage"], ["--fast"]])
def test_gpu_check_refuses_unknown_arguments_in_one_line(args, tmp_path):
    result, _, _ = gpu_check(tmp_path, *args, venv=tmp_path / "venv")
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "usage: gpu_check.sh [--stage cuda|env|tests|throughput]" in result.stderr


@no_cuda
def test_throughput_refuses_cuda_without_cuda(tmp_path):
    result = run([sys.executable, *BENCH, "--device", "cuda", "--csv", tmp_path / "t.csv"], check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # fairseq's import may log before it; the refusal itself is one line, the last.
    assert "--device cuda, but torch.cuda.is_available() is False" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "t.csv").exists()


def test_throughput_cpu_runs_and_upgrades_an_old_csv(tmp_path):
    path = tmp_path / "t.csv"
    old_header = "task,arch,threads,batch,length,words_per_s,gflop_per_s,fraction_of_peak,plugin_over_stock"
    path.write_text(old_header + "\nmasked_lm,roberta_l6_h512,1,16,128,633,77.1,0.836,1.023\n")
    result = run([sys.executable, *BENCH, "--device", "cpu", "--steps", "2", "--warmup", "1",
                  "--batch-scale", "0.125", "--threads", "1", "--csv", path])
    assert "matmul peak" in result.stdout and "plugin/stock" in result.stdout
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 5
    assert rows[0]["words_per_s"] == "633" and (rows[0]["device"], rows[0]["dtype"]) == ("cpu", "float32")
    assert {(r["device"], r["dtype"]) for r in rows[1:]} == {("cpu", "float32")}
    assert [r["batch"] for r in rows[1:]] == ["2", "2", "4", "4"]  # 16 and 32, scaled by 1/8
    assert all(float(r["words_per_s"]) > 0 for r in rows)


def test_fp16_update_is_fairseqs(tmp_path, monkeypatch):
    """The --fp16 update on a small model, on CPU: half model, fp32 master weights, a step
    that moves the weights, and an overflow that skips the step and halves the loss scale."""
    from fairseq_compress.benchmarks import train_throughput as tt

    # FP16Optimizer keys its flat fp32 copy by torch.cuda.current_device(); on CPU the
    # parameters' device index is None, so that key makes it work here unchanged.
    monkeypatch.setattr(torch.cuda, "current_device", lambda: None)
    tt.write_dictionaries(tmp_path)
    model, criterion, optimizer = tt.build("translation", "cross_entropy", ["-s", "en", "-t", "fr"],
                                           ["transformer_l2_h128"], tmp_path, "cpu", fp16=True)
    assert isinstance(optimizer, tt.FP16Optimizer)
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    [master] = optimizer.fp32_params.values()
    assert master.dtype == torch.float32
    sample = tt.make_sample("translation", 2, 8, seed=0)
    weight = next(model.parameters())
    before = weight.detach().clone()
    assert tt.update(model, criterion, optimizer, sample)
    assert not torch.equal(weight.detach(), before)
    optimizer.scaler.loss_scale = 2.0 ** 60  # fp16 gradients overflow to inf
    after_step = weight.detach().clone()
    assert not tt.update(model, criterion, optimizer, sample)
    assert torch.equal(weight.detach(), after_step)
    assert optimizer.scaler.loss_scale == 2.0 ** 59


def test_gpu_tests_collect_without_the_export_runtimes():
    """The GPU image has no ctranslate2 (docs/mixed_precision.md): `pytest -m gpu` there must still
    collect every gpu test. None in sys.modules makes `import ctranslate2` / `import transformers` fail."""
    program = ("import sys, pytest; sys.modules.update(ctranslate2=None, transformers=None); "
               "sys.exit(pytest.main(['--collect-only', '-q', '-m', 'gpu', '-p', 'no:cacheprovider', 'tests']))")
    result = run([sys.executable, "-c", program], check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    collected = re.search(r"^(\d+)/\d+ tests collected \(\d+ deselected\)", output, re.MULTILINE)
    assert collected and int(collected[1]) >= 10, output[-3000:]
    assert "tests/test_gpu.py::test_kmeans_on_cuda" in output
