"""Errors v2l raises on purpose: each message is one sentence naming the input and what to do."""


class V2LError(Exception):
    """Base class: a problem with the user's input or environment, never a bug in v2l."""


class MissingPackageError(V2LError, ImportError):
    """An optional model package is not installed."""


class ModelNotFoundError(V2LError, FileNotFoundError):
    """A model name, path or hub id could not be resolved."""


class ImageDecodeError(V2LError, ValueError):
    """A file is not an image, or is corrupt or truncated."""


class DataNotFoundError(V2LError, FileNotFoundError):
    """A data root, data set or split could not be found."""


class ManifestMismatchError(V2LError, ValueError):
    """An artefact was built with other models or settings than the ones in use."""


class ConfigError(V2LError, ValueError):
    """A configuration field (or the CLI option that sets it) has a value v2l cannot use."""


class OutputPathError(V2LError, OSError):
    """An output path is unusable (an existing folder, inside a file, unwritable); nothing was written or removed."""


class UnknownNameError(V2LError, ValueError):
    """A name (preset, model, template set, loss...) that no registry holds; the message lists the valid names."""


class ContextLengthError(V2LError, ValueError):
    """A prompt longer than the LLM's context: refused with its token count and the limit, never truncated."""


def require(module: str, feature: str, package: str | None = None):
    """Import `module` for `feature`, or fail in one sentence naming the package to install: libraries that serve a
    single feature (caption metrics, plots, intervals, approximate search) are imported only where it runs."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        name = package or module.split(".")[0]
        raise MissingPackageError(f"{feature} needs {name}: run `pip install {name}` (the set-up installs it).") from e
