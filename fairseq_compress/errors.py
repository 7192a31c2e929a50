"""One-line errors for bad configurations, raised before any training starts."""
import sys


class ConfigError(ValueError):
    """A flag or input the user must change; the message names it and what is allowed."""


def _print_config_errors(hook):
    def excepthook(kind, error, traceback):
        if issubclass(kind, ConfigError):
            print(f"error: {error}", file=sys.stderr)
        else:
            hook(kind, error, traceback)

    return excepthook


def install():
    """Command-line runs print a ConfigError as one line instead of a traceback."""
    if not getattr(sys.excepthook, "prints_config_errors", False):
        sys.excepthook = _print_config_errors(sys.excepthook)
        sys.excepthook.prints_config_errors = True
