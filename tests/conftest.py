import atexit
import functools
import gzip
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv that runs the tests holds the fairseq CLIs
USER_DIR = ROOT / "fairseq_compress"
RAW = ROOT / "data-bin" / "raw"
from fairseq_compress.studies.fairseq_log import records as log_records  # noqa: F401  fairseq's --log-format json records


# pytest-xdist runs one worker per core (scripts/test.sh): one thread each, in
# the workers and in the commands they start, so they do not oversubscribe the cores.
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"} if os.environ.get("PYTEST_XDIST_WORKER") else {}
if THREADS:
    torch.set_num_threads(1)


# A test is e2e when it, or a fixture it uses, starts a command or needs a prepared corpus;
# else unit (`pytest -m unit`: the math, in seconds). An explicit mark wins.
CORPUS_FIXTURES = {"mt_data", "mlm_data", "mt_checkpoint"}
STARTS_A_COMMAND = re.compile(r"\b(run|subprocess\.\w+|Popen)\(")


def pytest_collection_modifyitems(items):
    for item in items:
        if any(item.get_closest_marker(m) for m in ("unit", "e2e")):
            continue
        fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
        sources = [inspect.getsource(f) for f in [item.function, *fixtures] if inspect.isfunction(f)]
        e2e = CORPUS_FIXTURES & set(item.fixturenames) or any(STARTS_A_COMMAND.search(src) for src in sources)
        item.add_marker(pytest.mark.e2e if e2e else pytest.mark.unit)


# The Python tools that tests/cli_server.py starts from its pre-imported server.
SERVED_TOOLS = ("fairseq-train", "fairseq-generate", "fairseq-preprocess", "fairseq-validate",
                "fairseq-interactive", "fairseq-hydra-train", "fairseq-compress")


TESTS = Path(__file__).resolve().parent


def write_shim(shim, script):
    """An executable `shim` that runs the Python script `script` through the worker's server."""
    shim.write_text(f"#!{sys.executable} -S\nimport sys\nsys.path.insert(0, {str(TESTS)!r})\n"
                    f"from cli_server import client\nclient({str(script)!r})\n")
    shim.chmod(0o755)


@functools.cache
def cli_shims():
    """(folder of shims for SERVED_TOOLS, their environment), with this worker's server started;
    (None, {}) when FAIRSEQ_COMPRESS_TEST_CLI_SERVER=0."""
    if os.environ.get("FAIRSEQ_COMPRESS_TEST_CLI_SERVER", "1") == "0":
        return None, {}
    folder = Path(tempfile.mkdtemp(prefix="fcs-"))
    sock = folder / "server.sock"
    for tool in SERVED_TOOLS:
        write_shim(folder / tool, BIN / tool)
    env = {"PATH": f"{folder}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}", "FAIRSEQ_COMPRESS_CLI_SERVER": str(sock)}
    log = open(folder / "server.log", "w")
    server = subprocess.Popen([sys.executable, TESTS / "cli_server.py", sock], env={**os.environ, **THREADS, **env},
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    (folder / "server.sock.starting").write_text(str(server.pid))
    atexit.register(lambda: (server.kill(), server.wait(), shutil.rmtree(folder, ignore_errors=True)))
    return folder, env


def command_env(env=None):
    """The environment of a command a test starts: the venv's tools first on PATH (the fairseq
    ones through this worker's pre-imported server), the worker's thread cap."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **THREADS, **cli_shims()[1],
            **(env or {})}


def run(cmd, check=True, cwd=ROOT, env=None, input=None):
    """Run a command with the venv's tools first on PATH (`input` on its stdin); return the CompletedProcess."""
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=command_env(env), capture_output=True, text=True, input=input
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
        )
    return result


def one_line_error(result, *fragments):
    """A failed command whose stderr ends in one error line ("error: ..." or
    "PROGRAM: error: ...") holding every fragment, with no traceback; returns that line."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert re.match(r"^([\w.-]+( [\w-]+)?: )?error: ", last) and all(f in last for f in fragments), \
        result.stderr[-2000:]
    return last


def head_lines(src, dst, n):
    """Write the first n lines of a plain or .gz text file."""
    opener = gzip.open if str(src).endswith(".gz") else open
    with opener(src, "rt", encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for i, line in enumerate(f):
            if i == n:
                break
            out.write(line)


LABEL_SMOOTHING = ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]


def train_mt_command(criterion=LABEL_SMOOTHING, device=("--cpu",)):
    """fairseq-train and the options of the MT tests, with the given criterion and device flags."""
    return ["fairseq-train", "--user-dir", USER_DIR, *device, "--seed", "1",
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--lr", "0.002",
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "20", *criterion,
            "--max-tokens", "2048", "--no-progress-bar", "--log-interval", "10",
            "--no-epoch-checkpoints", "--num-workers", "0"]


TRAIN_MT = train_mt_command()


# fairseq-train options of the masked-LM / ELECTRA tests (the MT ones: TRAIN_MT).
TRAIN_MLM = ["--user-dir", USER_DIR, "--cpu", "--seed", "1", "--optimizer", "adam", "--lr", "0.0005",
             "--no-progress-bar", "--log-interval", "1", "--num-workers", "0", "--no-epoch-checkpoints",
             "--log-format", "simple"]
ELECTRA_TOKENS_PER_SAMPLE = 64
ELECTRA_PRETRAIN = ["--task", "masked_lm", "--criterion", "electra", "--arch", "electra_tiny",
                    "--mask-prob", "0.15", "--leave-unmasked-prob", "0.15", "--random-token-prob", "0.0",
                    "--tokens-per-sample", ELECTRA_TOKENS_PER_SAMPLE, "--max-tokens", "1024"]


def script(name):
    """The command of the pipeline scripts/NAME."""
    return ["bash", ROOT / "scripts" / name]


WORDS = "the a red blue green cat dog house tree river stone light dark big small old new".split()
MOTS = "le la rouge bleu vert chat chien maison arbre rivière pierre lumière sombre grand petit vieux neuf".split()


def sentences(n, vocabulary, offset=0):
    """n deterministic sentences of 4-9 words of `vocabulary`."""
    return [" ".join(vocabulary[(i * 7 + j * 3 + offset) % len(vocabulary)] for j in range(4 + i % 6)) for i in range(n)]

def write_parallel(directory, compress=False):
    """WMT14 layout: {train,valid,test}.{en,fr}, line-aligned word-for-word translations of WORDS into MOTS."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 400), ("valid", 30), ("test", 30)):
        for lang, vocabulary in (("en", WORDS), ("fr", MOTS)):
            text = "\n".join(sentences(n, vocabulary, offset=len(split))) + "\n"
            path = directory / f"{split}.{lang}"
            if compress:
                with gzip.open(f"{path}.gz", "wt") as f:
                    f.write(text)
            else:
                path.write_text(text)
    return directory


@pytest.fixture(scope="session")
def word_mt(tmp_path_factory):
    """(data-bin, checkpoint) of transformer_l2_h128 trained on write_parallel's word-for-word
    translations until it translates them (BLEU 100 on its training sentences), in ~30 s. 59
    pieces (the most sentencepiece allows on this text): each word is one."""
    work = tmp_path_factory.mktemp("word_mt")
    run(["bash", ROOT / "scripts/prepare_mt.sh", write_parallel(work / "raw"), work / "bin", "--vocab-size", "59"])
    run(train_mt_command() + [work / "bin", "--arch", "transformer_l2_h128", "--share-all-embeddings",
                              "--lr", "0.003", "--warmup-updates", "30", "--max-tokens", "500", "--max-update", "200",
                              "--save-dir", work / "ckpt"])
    return work / "bin", work / "ckpt" / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def mt_data(tmp_path_factory):
    """A slice of the shipped EN-FR corpus, prepared by scripts/prepare_mt.sh."""
    work = tmp_path_factory.mktemp("mt")
    raw = work / "raw"
    raw.mkdir()
    for split, n in (("train", 4000), ("valid", 200), ("test", 200)):
        for lang in ("en", "fr"):
            head_lines(RAW / "en_fr" / f"{split}.{lang}.gz", raw / f"{split}.{lang}", n)
    run(["bash", ROOT / "scripts/prepare_mt.sh", raw, work / "bin", "--vocab-size", "1000"])
    return work / "bin"


@pytest.fixture(scope="session")
def mt_checkpoint(mt_data, tmp_path_factory):
    """transformer_l2_h128 trained for a few updates with the plugin."""
    save_dir = tmp_path_factory.mktemp("mt_ckpt")
    run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--max-update", "40", "--save-dir", save_dir])
    return save_dir / "checkpoint_best.pt"


@pytest.fixture(scope="session")
def mlm_data(tmp_path_factory):
    """Slices of the shipped English text and cls task, prepared by
    scripts/prepare_mlm.sh and prepare_glue.sh: (en_bin, cls_bin)."""
    work = tmp_path_factory.mktemp("mlm")
    (work / "en").mkdir()
    (work / "cls").mkdir()
    head_lines(RAW / "en/train.txt.gz", work / "en/train.txt", 3000)
    head_lines(RAW / "en/valid.txt.gz", work / "en/valid.txt", 100)
    for split, n in (("train", 800), ("dev", 200), ("test", 200)):
        head_lines(RAW / f"cls/{split}.tsv.gz", work / f"cls/{split}.tsv", n + 1)
    run(["bash", ROOT / "scripts/prepare_mlm.sh", work / "en", work / "en-bin", "--vocab-size", "1000"])
    run(["bash", ROOT / "scripts/prepare_glue.sh", work / "cls", work / "cls-bin", work / "en-bin"])
    return work / "en-bin", work / "cls-bin"


class StudyRunner:
    """A study program run inside the test process (its main(), no interpreter start-up), its steps
    started as the tests start commands: the served fairseq tools first on PATH."""

    def __init__(self, capfd):
        self.capfd = capfd  # the file descriptors: what its steps print too, as a user sees it
        self.stderr = ""  # of the last run

    def run(self, module, args) -> str:
        """The study's printed output (its stderr in self.stderr)."""
        module.main([str(a) for a in args])
        printed = self.capfd.readouterr()
        self.stderr = printed.err
        return printed.out

    def error(self, module, args, *fragments) -> str:
        """The study stopped with one error line (sys.exit's, or argparse's on stderr) holding every fragment."""
        with pytest.raises(SystemExit) as exited:
            module.main([str(a) for a in args])
        code = exited.value.code
        message = code if isinstance(code, str) else self.capfd.readouterr().err.strip().splitlines()[-1]
        assert "\n" not in message and re.match(r"^([\w.-]+( [\w-]+)?: )?error: ", message), message
        assert all(f in message for f in fragments), message
        return message

    def command_line_error(self, module, args, *fragments) -> str:
        """The same check through `python -m MODULE` (once per study: the command line reaches main())."""
        return one_line_error(run([sys.executable, "-m", module.__name__, *args], check=False), *fragments)


@pytest.fixture
def study(monkeypatch, capfd):
    for key, value in command_env().items():
        monkeypatch.setenv(key, value)
    return StudyRunner(capfd)


def file_times(folder):
    """{path: (modification time, size)} of every file under `folder`: a rerun that reuses every stage leaves it
    equal."""
    return {path: (path.stat().st_mtime_ns, path.stat().st_size) for path in Path(folder).rglob("*") if path.is_file()}
