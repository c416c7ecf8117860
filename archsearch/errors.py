"""Errors that archsearch reports to the user as one clear message."""


class ArchsearchError(Exception):
    """Base class: the command line prints the message, without a traceback."""


class SpaceError(ArchsearchError, ValueError):
    """A space file or one of its declarations is invalid."""


class InfeasibleArchitecture(ArchsearchError, ValueError):
    """A concrete architecture cannot be built or breaks a constraint.

    Args:
        field: the dimension or constraint at fault, e.g. `"stages"`.
        value: its offending value.
        reason: what was expected instead.
        architecture: the planned `Architecture`, when only a budget
            (`max_params`, `max_flops`, `max_memory`, `max_latency_ms`,
            `max_model_bytes`) rules it out.
    """

    def __init__(self, field, value, reason, architecture=None):
        self.field, self.value, self.reason, self.architecture = field, value, reason, architecture
        super().__init__(f"{field}={value!r}: {reason}")


class DataError(ArchsearchError, ValueError):
    """Data cannot be found, read or matched to the space."""
