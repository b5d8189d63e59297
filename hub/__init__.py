"""msp-hub: the public surface for plugin authors."""

from hub.connectors import Connector, Page, PushContext, PushResult, Stream
from hub.errors import (ConfigError, CredentialsError, HubError, MalformedResponseError, MappingError,
                        RetryableError, VendorError)
from hub.hookspecs import hookimpl
from hub.records import (BILLABLE_OPTIONS, Action, Agreement, AgreementAddition, Alert, AlertEvent, BillingLine,
                         Client, Device, ProductLine, Ticket, TimeEntry)

__all__ = sorted([
    "BILLABLE_OPTIONS", "Alert", "AlertEvent", "Ticket", "Agreement", "AgreementAddition", "ProductLine", "TimeEntry",
    "Action", "BillingLine", "Client", "ConfigError", "Connector", "CredentialsError", "Device",
    "HubError", "MalformedResponseError", "MappingError", "Page", "PushContext", "PushResult",
    "RetryableError", "Stream", "VendorError", "hookimpl",
])
