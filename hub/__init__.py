"""msp-hub: the public surface for plugin authors."""

from hub.connectors import Connector, Page, PushContext, PushResult, Stream, map_records
from hub.errors import (ConfigError, CredentialsError, HubError, MalformedResponseError, MappingError,
                        RetryableError, VendorError)
from hub.hookspecs import hookimpl
from hub.records import (BILLABLE_OPTIONS, Action, Agreement, AgreementAddition, Alert, AlertEvent, BillingLine,
                         Client, Device, ProductLine, Ticket, TimeEntry)

__all__ = [
    "Action",
    "Agreement",
    "AgreementAddition",
    "Alert",
    "AlertEvent",
    "BILLABLE_OPTIONS",
    "BillingLine",
    "Client",
    "ConfigError",
    "Connector",
    "CredentialsError",
    "Device",
    "HubError",
    "MalformedResponseError",
    "MappingError",
    "Page",
    "ProductLine",
    "PushContext",
    "PushResult",
    "RetryableError",
    "Stream",
    "Ticket",
    "TimeEntry",
    "VendorError",
    "hookimpl",
    "map_records",
]
