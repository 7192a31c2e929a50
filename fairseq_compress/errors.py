"""One-line errors for bad configurations and inputs, raised before any training starts."""
import sys


class ConfigError(ValueError):
    """A flag or input the user must change; the message names it and what is allowed."""


STATE_DICT_MISMATCH = "Error(s) in loading state_dict for"


def _causes(error):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def user_error_line(error):
    """The one line a user needs for an error caused by their input, or None for a bug.

    Besides ConfigError: a missing file (data dir not prepared, wrong path) and a
    checkpoint whose parameters do not fit the model (another arch, or another
    dictionary), which fairseq reports as a multi-line load_state_dict error."""
    if isinstance(error, (ConfigError, FileNotFoundError)):
        return str(error)
    mismatch = next((e for e in _causes(error) if isinstance(e, RuntimeError)
                     and str(e).startswith(STATE_DICT_MISMATCH)), None)
    if mismatch is not None:
        detail = next(line.strip() for line in str(mismatch).splitlines()[1:] if line.strip())
        if detail.startswith(("Missing key", "Unexpected key")):  # the first key names the difference
            detail = detail.split(", ")[0] + (", ..." if ", " in detail else "")
        where = str(error).split(";")[0] if error is not mismatch else "the checkpoint does not fit the model"
        return f"{where}: another architecture or dictionary? ({detail})"
    return None


def print_user_errors(hook):
    """An excepthook that prints a user's error as one line and leaves bugs to `hook`."""

    def excepthook(kind, error, traceback):
        line = user_error_line(error)
        if line is None:
            hook(kind, error, traceback)
        else:
            print(f"error: {line}", file=sys.stderr)

    return excepthook
