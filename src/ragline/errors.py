"""One exception tree for ragline. The CLI maps it to exit codes, the server to HTTP status.

    RaglineError                      base: any failure ragline reports to the user
    ├── ConfigError                   bad settings or arguments (k ≤ 0, unknown mode, bad TOML)
    ├── IndexNotFoundError            no index at that path
    ├── IndexMismatchError            index made by another encoder / format version
    ├── IndexCorruptError             a file of the index is damaged
    ├── IndexBusyError                another process is writing the index
    ├── EmptyIndexError               searching an index with no passages
    ├── DocumentNotFoundError         `rm` of a document that is not in the index
    ├── IngestError                   one file could not be ingested (skipped, others go on)
    │   ├── UnsupportedFileError      no loader for that extension
    │   └── UnreadableFileError       empty, binary, corrupt or undecodable file
    └── ModelUnavailableError         a model or its runtime is not installed / not loadable

    try:
        rag.search("query", k=0)
    except ConfigError as e:
        print(e)   # "k must be ≥ 1, got 0"
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


def missing_extra(package: str, extra: str) -> ModelUnavailableError:
    """The error for an optional dependency that is not installed."""
    return ModelUnavailableError(
        f"{package} is not installed; install it with: pip install 'ragline[{extra}]'"
    )
