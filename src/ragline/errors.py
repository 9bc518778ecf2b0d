"""One exception tree for ragline. The CLI maps it to exit codes, the server to HTTP status.

    RaglineError                      base: any failure ragline reports to the user (exit 1)
    ├── ConfigError                   bad settings or arguments (k ≤ 0, unknown mode, bad TOML; exit 2)
    ├── IndexNotFoundError            no index at that path
    ├── IndexMismatchError            index made by another encoder / format version
    ├── IndexCorruptError             a file of the index is damaged
    ├── IndexBusyError                another process is writing the index
    ├── EmptyIndexError               searching an index with no passages
    ├── ShardUnavailableError         a shard of a sharded index stayed down (named)
    ├── DocumentNotFoundError         `rm` of a document that is not in the index
    ├── IngestError                   one file could not be ingested (skipped, others go on)
    │   ├── UnsupportedFileError      no loader for that extension
    │   └── UnreadableFileError       empty, binary, corrupt or undecodable file
    ├── ModelUnavailableError         a model or its runtime is not installed / not loadable
    ├── ModelNotFoundError            a request names a model the server does not have
    ├── CollectionNotFoundError       a request names a collection the server does not serve to it
    ├── UnauthorizedError             a request without the server's API key
    ├── ForbiddenError                a write its key may not make
    │   └── ReadOnlyError             a write asked of a read-only server
    ├── PayloadTooLargeError          an upload over the server's limit
    ├── BusyError                     the generation queue cannot take it now (retry_after s)
    │   ├── QueueFullError            too many generations waiting
    │   └── QueueTimeoutError         waited in the queue past its limit
    ├── GenerationTimeoutError        a generation ran past its time limit
    └── ClientGoneError               the client of a request left before its answer (cancelled)

    try:
        rag.search("query", k=0)
    except ConfigError as e:
        print(e)   # "k must be an integer from 1 to 1000, got 0"
"""


class RaglineError(Exception):
    """Base of every error ragline raises on purpose."""

    exit_code = 1


class ConfigError(RaglineError, ValueError):
    exit_code = 2


class IndexNotFoundError(RaglineError):
    pass


class IndexMismatchError(RaglineError):
    pass


class IndexCorruptError(RaglineError):
    pass


class IndexBusyError(RaglineError):
    pass


class EmptyIndexError(RaglineError):
    pass


class ShardUnavailableError(RaglineError):
    """A shard of a sharded index could not answer, even after its actor was restarted."""


class DocumentNotFoundError(RaglineError):
    pass


class IngestError(RaglineError):
    pass


class UnsupportedFileError(IngestError):
    pass


class UnreadableFileError(IngestError):
    pass


class ModelUnavailableError(RaglineError):
    pass


class ModelNotFoundError(RaglineError):
    """An OpenAI-compatible request names a model the server does not have."""


class UnauthorizedError(RaglineError):
    pass


class CollectionNotFoundError(RaglineError):
    """A collection the server does not serve, or not to this key."""


class ForbiddenError(RaglineError):
    """A write the request's key may not make."""


class ReadOnlyError(ForbiddenError):
    """A write asked of a read-only server."""


class PayloadTooLargeError(RaglineError):
    pass


class BusyError(RaglineError):
    """The server cannot take the generation now; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFullError(BusyError):
    pass


class QueueTimeoutError(BusyError):
    pass


class GenerationTimeoutError(RaglineError):
    pass


class ClientGoneError(RaglineError):
    pass


def missing_extra(package: str, extra: str) -> ModelUnavailableError:
    """The error for an optional dependency that is not installed."""
    return ModelUnavailableError(
        f"{package} is not installed; install it with: pip install 'ragline[{extra}]'"
    )
