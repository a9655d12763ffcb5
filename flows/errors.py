"""One exception hierarchy for every expected failure; each message names the cause and the fix."""

from __future__ import annotations


class NodeError(Exception):
    """An expected failure of a node. Its message is shown to the user as is, without traceback."""

    transient = False


class ConfigurationError(NodeError, ValueError):
    """The node's settings or parameters are wrong."""


class MissingKeys(NodeError):
    """An action needs Numerai API keys and none were found."""

    def __init__(self, action: str = "This action"):
        super().__init__(
            f"{action} needs Numerai API keys, and none were found. Set NUMERAI_PUBLIC_ID and "
            "NUMERAI_SECRET_KEY, or save them in the Prefect Secret blocks "
            "'numerai-public-id' and 'numerai-secret-key'. Create keys at "
            "numer.ai -> Account -> Custom API keys, with the upload scope."
        )


class InvalidKeys(NodeError, PermissionError):
    """Numerai refused the API keys."""


class UnknownModel(NodeError, LookupError):
    """The Numerai account has no model of that name in this tournament."""


class RoundClosed(NodeError):
    """The round no longer takes submissions."""


class TooManyRestarts(NodeError, RuntimeError):
    """A node run crashed and was started again too often: each start would likely crash too."""

    def __init__(self, starts: int, max_restarts: int):
        super().__init__(
            f"This node run was started {starts} times, more than the first start and "
            f"{max_restarts} restarts (NUMERAI_NODES_MAX_RESTARTS): it crashed each time, most "
            "likely out of memory or killed by its machine. Give the node a bigger size preset "
            "(e.g. a mem-* size in prefect.yaml), or fewer features (a smaller feature_set), "
            "then run it again."
        )


class NotEnoughMemory(NodeError, MemoryError):
    """Training would need more memory than the machine has: it would be killed mid-way."""

    def __init__(
        self, rows: int, features: int, needed_mib: int, available_mib: int, size: str | None = None
    ):
        where = f"size preset {size}" if size else "this machine"
        super().__init__(
            f"Out of memory at {where} ({available_mib / 1024:.1f} GiB): training on "
            f"{rows:,} rows x {features:,} features needs about {needed_mib / 1024:.1f} GiB. "
            f"Choose a size preset with at least {needed_mib / 1024:.1f} GiB "
            "(`numerai-nodes sizes` shows what each fits) or a smaller feature set."
        )


class ModelNotReady(NodeError, LookupError):
    """No trained model of the node's spec family is in the model store, and the node may not
    train on round day. The message names the training command."""


class DatasetNotFound(NodeError, FileNotFoundError):
    """Numerai does not serve the requested file."""


class NumeraiApiError(NodeError):
    """Numerai's API answered with an error this project has no finer name for."""


class NumeraiUnavailable(NodeError, ConnectionError):
    """Numerai's API (or its file storage) did not answer. Worth retrying."""

    transient = True


class UploadRejected(NodeError):
    """The storage behind Numerai's upload URL refused the predictions file."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class CommandFailed(NodeError, RuntimeError):
    """A command model's train or predict command failed: the message names the command, its
    exit code and the last lines of its stderr."""


class CommandTimedOut(CommandFailed):
    """A command model's command ran past its timeout and was stopped, with its processes.
    (Not a TimeoutError: that is an OSError, which readers of cached files take for damage.)"""


class InvalidPredictions(NodeError, ValueError):
    """The predictions failed validation; nothing was uploaded."""


class InsufficientCoverage(InvalidPredictions):
    """Too few live Signals tickers could be priced or predicted for Numerai to accept them."""
