"""The exception tree of msp-hub.

    HubError                      anything msp-hub raises on purpose
    ├── ConfigError               a config or mappings file is wrong: names the file, the key, the fix
    ├── MappingError              a record cannot be billed as the mappings stand (unknown tier,
    │                             client without contract, device class not mapped)
    ├── UnavailableError          the service cannot take the request now (the daemon is stopping)
    ├── IncompleteError           a read may have ended early (a short page, a count that disagrees):
    │                             the pass is not complete, what it feeds is held
    └── VendorError               a vendor answered with an error that retrying will not fix
        ├── CredentialsError      the vendor refused our credentials (401/403, or a cloud 404)
        └── RetryableError        429, 5xx, timeouts, transport errors: retried with backoff
            └── MalformedResponseError  the body was not what the API promises (garbage JSON)

Messages never contain a secret: clients build them from the method, the path and the vendor's
own error text, never from headers or credentials.
"""

from __future__ import annotations


class HubError(Exception):
    """Base class of every error msp-hub raises on purpose."""


class ConfigError(HubError):
    """A config or mappings file is wrong; the message names the file, the key and the fix."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None, fix: str | None = None):
        self.file, self.key, self.fix = file, key, fix
        where = ", ".join(p for p in (file, f"key '{key}'" if key else None) if p)
        text = f"{where}: {message}" if where else message
        if fix:
            text += f" (fix: {fix})"
        super().__init__(text)


class MappingError(HubError):
    """A record cannot be billed as the mappings stand; names the record and the fix."""


class UnavailableError(HubError):
    """The service cannot take the request now (e.g. the daemon is stopping); try again later."""


class IncompleteError(HubError):
    """A vendor read may have ended early (a short page before the end marker, a total that
    disagrees with the records read). The stream's pass is recorded as failed, so nothing it
    feeds is pushed; the message names the stream, what disagreed and what to do."""


class VendorError(HubError):
    """A vendor answered with an error that retrying will not fix.

    Attributes: ``vendor``, ``status`` (HTTP status or None), ``method``, ``url`` (no query secrets),
    ``detail`` (the vendor's own error text, trimmed).
    """

    def __init__(self, vendor: str, status: int | None, method: str, url: str, detail: str = ""):
        self.vendor, self.status, self.method, self.url, self.detail = vendor, status, method, url, detail
        code = f"HTTP {status}" if status is not None else "no response"
        msg = f"{vendor}: {method} {url} failed with {code}"
        if detail:
            msg += f": {detail[:300]}"
        super().__init__(msg)


class CredentialsError(VendorError):
    """The vendor refused our credentials; the fix is in the config, not in a retry."""


class RetryableError(VendorError):
    """A transient failure (429, 5xx, timeout, transport); ``retry_after`` in seconds if the vendor said."""

    def __init__(self, vendor: str, status: int | None, method: str, url: str, detail: str = "",
                 retry_after: float | None = None):
        super().__init__(vendor, status, method, url, detail)
        self.retry_after = retry_after


class MalformedResponseError(RetryableError):
    """The vendor's body was not what its API promises (e.g. truncated or non-JSON)."""
