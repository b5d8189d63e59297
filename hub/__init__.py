"""msp-hub: the public surface for plugin authors."""

from hub.connectors import Connector, Page, PushContext, PushResult, Stream
from hub.errors import (ConfigError, CredentialsError, HubError, MalformedResponseError, MappingError,
                        RetryableError, VendorError)
from hub.hookspecs import hookimpl
from hub.records import (BILLABLE_OPTIONS, Action, Agreement, AgreementAddition, BillingLine, Client, Device,
                         ProductLine, TimeEntry)

__all__ = sorted([
    "BILLABLE_OPTIONS", "Agreement", "AgreementAddition", "ProductLine", "TimeEntry",
    "Action", "BillingLine", "Client", "ConfigError", "Connector", "CredentialsError", "Device",
    "HubError", "MalformedResponseError", "MappingError", "Page", "PushContext", "PushResult",
    "RetryableError", "Stream", "VendorError", "hookimpl",
])
