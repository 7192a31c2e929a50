"""Start the fairseq command-line tools in tests without paying their imports every time.

Each fairseq CLI imports torch and all of fairseq (about 7 s of CPU on the CI machine) before it
reads an argument, and the suite starts a few hundred of them, directly and through scripts/.
So each pytest worker keeps one server that has done those imports once and forks a fresh
process per command. A shim named like the tool (fairseq-train, ...), first on the commands'
PATH, hands the server its argv, cwd, environment and stdin/stdout/stderr, forwards signals, and
exits as the command did (SIGKILL of the shim kills the command). The forked process runs the
venv's own console script as `python SCRIPT` would (runpy, as __main__), imports the plugin
itself through --user-dir (the server never imports fairseq_compress), and leaves through the
interpreter's exit steps (atexit, flush), so only the start-up is shared.

It serves the bash stage tests and the commands the studies' smoke tests start through scripts/;
the study programs themselves run inside the test process (their main()). It needs Linux: fork,
AF_UNIX SOCK_SEQPACKET sockets and file descriptors passed over them (socket.send_fds); elsewhere
set FAIRSEQ_COMPRESS_TEST_CLI_SERVER=0.

Written here because nothing kept does it: multiprocessing's forkserver serves only the process
that started it, not scripts that bash starts. Commands whose start-up environment differs from
the server's (PYTHONPATH, ...) run the slow way, and so does everything when
FAIRSEQ_COMPRESS_TEST_CLI_SERVER=0; a command's own thread count (OMP_NUM_THREADS) is served.
"""
import atexit
import contextlib
import json
import os
import select
import signal
import socket
import sys
import time

SOCKET_ENV = "FAIRSEQ_COMPRESS_CLI_SERVER"
# Read by the interpreter or by torch while importing: a command that sets them differently
# from the server must start an interpreter of its own.
STARTUP_ENV = ("PYTHONPATH", "PYTHONHASHSEED", "PYTHONWARNINGS", "PYTHONSAFEPATH", "CUDA_VISIBLE_DEVICES")
# Thread counts torch also takes after import: a served command gets its own OMP_NUM_THREADS through
# torch.set_num_threads (which sets MKL's count too), so the speed races' one- and two-thread runs are
# served. The server never runs a parallel region, so the forked command starts OpenMP's threads afresh.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Importing fairseq configures logging (a stderr handler, INFO): a fresh fairseq-generate,
# -validate, -preprocess or fairseq-compress logs there. fairseq_cli/train.py alone configures
# logging (to stdout) before it imports fairseq. Each command gets the root logger it would have.
CONFIGURES_LOGGING_FIRST = ("fairseq-train",)
ROOT_LOGGING = {}  # "untouched" / "fairseq": (handlers, level) of the root logger, set by serve()
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
MAX_MESSAGE = 1 << 20


def _send(conn: socket.socket, message: dict, fds=()) -> None:
    socket.send_fds(conn, [json.dumps(message).encode()], list(fds))


def _receive(conn: socket.socket, max_fds: int = 0):
    data, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, max_fds)
    return (json.loads(data) if data else None), fds


# --- the shim: stdlib only, started with python -S ------------------------------------------

def client(script: str) -> None:
    """Run `script` (a console script of the venv) through the server, or exec it if none answers."""
    path = os.environ.get(SOCKET_ENV)
    conn = _connect(path) if path else None
    if conn is None:
        _exec(script)
    argv = [script] + sys.argv[1:]
    _send(conn, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}, fds=(0, 1, 2))
    reply, _ = _receive(conn)
    if reply is None or reply.get("fallback"):
        _exec(script)
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, lambda signum, _frame: _send(conn, {"signal": signum}))
    while True:
        reply, _ = _receive(conn)
        if reply is None:  # the server died under the command
            sys.exit("cli_server: the command's server went away")
        if "status" in reply:
            _exit_like(reply["status"])


def _connect(path: str):
    """A connection to the server; waits while it is still importing, None if it is gone."""
    deadline = time.monotonic() + 120
    while True:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            conn.connect(path)
            return conn
        except FileNotFoundError:
            conn.close()
            if time.monotonic() > deadline or not _starting(path):
                return None
            time.sleep(0.05)
        except OSError:
            conn.close()
            return None


def _starting(path: str) -> bool:
    """Whether the server at `path` is alive and still importing (its pid is in PATH.starting)."""
    try:
        with open(path + ".starting") as marker:
            return os.path.exists(f"/proc/{int(marker.read())}")
    except (OSError, ValueError):
        return False


def _exec(script: str) -> None:
    os.execv(script, [script] + sys.argv[1:])


def _exit_like(status: int) -> None:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    sys.exit(os.waitstatus_to_exitcode(status))


# --- the server ------------------------------------------------------------------------------

def serve(path: str) -> None:
    """Import what every fairseq CLI imports, then fork one process per shim that connects."""
    import logging
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import torch  # noqa: F401
    import fairseq  # noqa: F401  (imports every task, model, criterion and optimizer)
    import fairseq.checkpoint_utils  # noqa: F401
    import fairseq.sequence_generator  # noqa: F401
    import fairseq.trainer  # noqa: F401
    import sacrebleu  # noqa: F401
    import sentencepiece  # noqa: F401
    ROOT_LOGGING.update(untouched=(handlers, level), fairseq=(list(root.handlers), root.level))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the per-command managers
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path + ".starting")
    parent = os.getppid()
    while True:
        if not select.select([listener], [], [], 1.0)[0]:
            if os.getppid() != parent:  # the pytest worker is gone
                return
            continue
        conn, _ = listener.accept()
        request, fds = _receive(conn, max_fds=3)
        if request is None:
            conn.close()
        elif (any(request["env"].get(k) != os.environ.get(k) for k in STARTUP_ENV)
              or not (threads := _threads(request["env"]))):
            _send(conn, {"fallback": True})
            conn.close()
        elif os.fork() == 0:
            listener.close()
            _manage(conn, request, fds, threads)
        for fd in fds:
            os.close(fd)
        conn.close()


def _threads(env: dict) -> int:
    """The command's thread count, where the server can give it one (0: it cannot): the server's own where the
    command's counts are the server's, else OMP_NUM_THREADS, a positive integer that MKL_NUM_THREADS, if set, equals."""
    import torch
    if all(env.get(k) == os.environ.get(k) for k in THREAD_ENV):
        return torch.get_num_threads()
    omp = env.get("OMP_NUM_THREADS", "")
    return int(omp) if omp.isdigit() and int(omp) > 0 and env.get("MKL_NUM_THREADS", omp) == omp else 0


def _manage(conn: socket.socket, request: dict, fds, threads: int) -> None:
    """In the forked manager: fork the command, relay signals, report how it ended."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run_command(request, fds, threads)
    for fd in fds:
        os.close(fd)
    _send(conn, {"pid": pid})
    exited = os.pidfd_open(pid)
    while True:
        ready, _, _ = select.select([conn, exited], [], [])
        if exited in ready:
            _, status = os.waitpid(pid, 0)
            try:
                _send(conn, {"status": status})
            finally:
                os._exit(0)
        message, _ = _receive(conn)
        if message is None:  # the shim was killed: so is the command, with its children
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os._exit(0)
        os.kill(pid, message["signal"])


def _run_command(request: dict, fds, threads: int) -> None:
    """In the forked command: become `python SCRIPT ARGS` in the caller's cwd, env, stdio and `threads`
    (its thread count, from _threads)."""
    import logging
    import runpy

    import torch
    os.setpgid(0, 0)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    sys.argv = request["argv"]
    sys.path[0] = os.path.dirname(sys.argv[0])
    root = logging.getLogger()
    configures_first = os.path.basename(sys.argv[0]) in CONFIGURES_LOGGING_FIRST
    root.handlers[:], root.level = ROOT_LOGGING["untouched" if configures_first else "fairseq"]
    code = 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except BaseException as error:  # as the interpreter does, from the script's own frame on
        trace = error.__traceback__
        while trace is not None and trace.tb_frame.f_code.co_filename != sys.argv[0]:
            trace = trace.tb_next
        sys.excepthook(type(error), error.with_traceback(trace), trace)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _exit_code(code) -> int:
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    serve(sys.argv[1])
