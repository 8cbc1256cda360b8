"""The project's exceptions, in one place. bundler/ imports them from here (runtime/ never
imports bundler/). Only the CLIs turn them into exit codes; the server maps them to HTTP by type."""


class LlamabundleError(Exception):
    """Base of every error this project raises on purpose; its message is meant for the user."""


class InvalidModelError(LlamabundleError):
    """The input file is not a usable GGUF model."""


class ArtifactError(LlamabundleError):
    """An artifact is truncated, corrupted or not an artifact at all."""


class LoadError(LlamabundleError):
    """The model could not be loaded, for a reason that is not one of ours (a library that
    will not load here, llama.cpp refusing the weights)."""


class BuildError(LlamabundleError):
    """Writing an artifact failed (output path, disk, runtime freezing)."""


class DocumentError(LlamabundleError):
    """A knowledge document cannot be read (unreadable, encrypted, empty, a scan, undecodable)."""


class SettingsError(LlamabundleError):
    """A setting has a value that cannot work (e.g. a public host without an API key)."""


class TemplateError(LlamabundleError):
    """A chat template that cannot be used (it does not parse)."""


class RequestError(LlamabundleError):
    """The caller's request cannot be served as asked (HTTP 4xx)."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


class ContextOverflowError(RequestError):
    """The prompt does not fit the context window."""

    def __init__(self, message: str):
        super().__init__(message, param="messages", code="context_length_exceeded")


class ModelNotFoundError(RequestError):
    """The request names a model this server does not have."""

    status = 404
    type = "not_found_error"

    def __init__(self, message: str):
        super().__init__(message, param="model", code="model_not_found")


class AuthError(RequestError):
    status = 401
    type = "authentication_error"


class BusyError(RequestError):
    """Too many requests are already waiting for the model."""

    status = 503
    type = "server_busy"


class Abandoned(LlamabundleError):
    """The client went away (or the user pressed Ctrl-C): the request was dropped wherever it
    was, waiting, reading its prompt or generating."""


class NoKnowledgeError(RequestError):
    """A knowledge route in a bundle built without --knowledge."""

    status = 404
    type = "not_found_error"


class NoDocumentError(RequestError):
    """A knowledge route naming a document the bundle does not hold."""

    status = 404
    type = "not_found_error"


class NotReadyError(RequestError):
    status = 503
    type = "model_loading"
