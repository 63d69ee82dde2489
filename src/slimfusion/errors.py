"""Typed errors. The CLI turns every `SlimfusionError` into a one-line message and exit code 2."""


class SlimfusionError(Exception):
    """Base class of every error slimfusion raises on purpose (bad input, not bugs)."""


class ModelNotFoundError(SlimfusionError, FileNotFoundError):
    """A model path, hub id or builtin name that does not exist or cannot be reached."""


class NotAModelError(SlimfusionError, ValueError):
    """A folder or file that exists but holds no model slimfusion can load."""


class CorruptFileError(SlimfusionError, ValueError):
    """A weights or metadata file that is truncated, corrupt or inconsistent with its config."""


class FormatVersionError(SlimfusionError, ValueError):
    """A `slimfusion.json` written by a newer slimfusion than this one."""


class ConfigError(SlimfusionError, ValueError):
    """An option out of range or a combination of options that cannot work."""


class DataError(SlimfusionError, ValueError):
    """A data set that is missing, empty or unreadable."""


class OutputError(SlimfusionError, OSError):
    """An output that cannot be written: read-only folder, no space left, permission denied (path and cause named)."""


def output_error(target, exc: OSError) -> OutputError:
    """The OutputError for an OSError met while writing `target`."""
    return OutputError(f"cannot write {target}: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))
