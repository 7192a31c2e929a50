"""tests/cli_server.py: a served command behaves as the script started on its own."""
import signal
import subprocess
import sys
import time

import pytest

from conftest import cli_shims, command_env, write_shim

PROBE = """
import os, sys
parent = open(f"/proc/{os.getppid()}/cmdline").read()
print("served" if os.environ["FAIRSEQ_COMPRESS_CLI_SERVER"] in parent else "own", sys.argv[1:], os.getcwd(), os.environ.get("PROBE"),
      sys.stdin.read(), flush=True)
print("to stderr", file=sys.stderr)
if sys.argv[1] == "raise":
    raise ValueError("probe failed")
if sys.argv[1] == "wait":
    import time
    print(os.getpid(), flush=True)
    time.sleep(120)
sys.exit(int(sys.argv[1]))
"""

pytestmark = pytest.mark.skipif(cli_shims()[0] is None, reason="FAIRSEQ_COMPRESS_TEST_CLI_SERVER=0")


@pytest.fixture
def probe(tmp_path):
    """(the probe script, a shim that runs it through the server)."""
    script = tmp_path / "probe"
    script.write_text(f"#!{sys.executable}\n{PROBE}")
    script.chmod(0o755)
    write_shim(tmp_path / "probe-shim", script)
    return script, tmp_path / "probe-shim"


def start(cmd, cwd, **env):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=command_env(env), input="from stdin",
                          capture_output=True, text=True)


@pytest.mark.parametrize("arg", ["0", "3", "raise"])
def test_served_command_has_the_argv_cwd_env_stdio_and_exit_of_its_own_run(probe, tmp_path, arg):
    script, shim = probe
    own = start([script, arg], tmp_path, PROBE="x")
    served = start([shim, arg], tmp_path, PROBE="x")
    assert served.stdout.startswith("served ") and own.stdout.startswith("own ")
    assert served.stdout[len("served"):] == own.stdout[len("own"):]
    assert served.returncode == own.returncode == {"0": 0, "3": 3, "raise": 1}[arg]
    assert served.stderr.replace(str(shim), str(script)) == own.stderr
    if arg == "raise":
        assert "Traceback" in served.stderr and served.stderr.strip().endswith("ValueError: probe failed")


def test_a_different_start_up_environment_runs_the_command_on_its_own(probe, tmp_path):
    _, shim = probe
    assert start([shim, "0"], tmp_path, PYTHONPATH=str(tmp_path)).stdout.startswith("own ")
    # a thread count torch cannot take after import alone: MKL's differing from OpenMP's
    assert start([shim, "0"], tmp_path, OMP_NUM_THREADS="3", MKL_NUM_THREADS="1").stdout.startswith("own ")


def test_a_served_command_runs_on_the_thread_count_of_its_own_run(tmp_path):
    """The speed races' one- and two-thread runs are served: torch's thread count is the one their own
    interpreter would have read from OMP_NUM_THREADS and MKL_NUM_THREADS."""
    script = tmp_path / "threads"
    script.write_text(f"#!{sys.executable}\nimport os, sys, torch\n"
                      "served = os.environ['FAIRSEQ_COMPRESS_CLI_SERVER'] in open(f'/proc/{os.getppid()}/cmdline').read()\n"
                      "print('served' if served else 'own', torch.get_num_threads())\n")
    script.chmod(0o755)
    write_shim(tmp_path / "threads-shim", script)
    for threads in ("2", "1"):  # the races' counts
        counts = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        assert start([script], tmp_path, **counts).stdout.split() == ["own", threads]
        assert start([tmp_path / "threads-shim"], tmp_path, **counts).stdout.split() == ["served", threads]


def test_signals_reach_the_command_and_killing_the_shim_kills_it(probe):
    _, shim = probe
    for sig in (signal.SIGTERM, signal.SIGKILL):
        shim_process = subprocess.Popen([shim, "wait"], env=command_env(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert shim_process.stdout.readline().startswith("served ")
        command = int(shim_process.stdout.readline())
        shim_process.send_signal(sig)
        assert shim_process.wait(timeout=30) == -sig
        deadline = time.monotonic() + 30
        while _alive(command) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(command)


def _alive(pid):
    """Whether `pid` runs (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# A CLI's logging as a fresh process has it: fairseq_cli/train.py configures it (to stdout) before
# it imports fairseq; every other CLI imports fairseq first, which configures it (to stderr).
LOGGING_PROBE = """
import logging, sys
if sys.argv[0].endswith("fairseq-train"):
    logging.basicConfig(format="%(name)s | %(message)s", level=logging.INFO, stream=sys.stdout)
import fairseq
logging.basicConfig(format="%(name)s | %(message)s", level=logging.INFO, stream=sys.stdout)  # fairseq_cli/generate.py's
logging.getLogger("probe").info("logged")
"""


@pytest.mark.parametrize("name", ["fairseq-train", "fairseq-generate"])
def test_a_served_command_logs_where_its_own_run_does(tmp_path, name):
    script, shim = tmp_path / name, tmp_path / f"{name}-shim"
    script.write_text(f"#!{sys.executable}\n{LOGGING_PROBE}")
    script.chmod(0o755)
    write_shim(shim, script)
    own, served = start([script], tmp_path), start([shim], tmp_path)
    logged = [stream for stream in ("stdout", "stderr") if "probe" in getattr(own, stream) and "logged" in getattr(own, stream)]
    assert logged == (["stdout"] if name == "fairseq-train" else ["stderr"]), (own.stdout, own.stderr)
    assert ("logged" in served.stdout, "logged" in served.stderr) == ("logged" in own.stdout, "logged" in own.stderr)
