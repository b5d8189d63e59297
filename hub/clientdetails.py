"""Who an invoice is addressed to: a client's billing details (address, VAT number, e-mail, locale).

They come from the PSA company the client is linked to, and a contract may set or override each
one. ``details_for`` answers for one client; the plan reads them to decide the client's tax and
to tell the invoicing connector what its customer must carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from hub.engine import Hub
    from hub.mappings import Contract


@dataclass(frozen=True)
class ClientDetails:
    """A client's billing details; None where nothing says.

    ``address``: ``line1``, ``line2``, ``city``, ``postal_code``, ``state``, ``country`` (ISO
    3166-1 alpha-2), as far as known. ``vat_number``: with its country prefix (``DE123456789``).
    ``locale``: a BCP 47 tag (``fr-FR``). ``sources``: for each field, where it came from
    (``connectwise company 250``, ``contracts.toml [clients.acme]``).
    """

    name: str
    email: str | None = None
    address: dict[str, str] | None = None
    vat_number: str | None = None
    locale: str | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def country(self) -> str | None:
        return (self.address or {}).get("country") or None

    def to_payload(self) -> dict[str, Any]:
        """The ``customer`` block of an invoice payload (keys with a value only)."""
        out: dict[str, Any] = {"name": self.name}
        for key in ("email", "address", "vat_number", "locale"):
            value = getattr(self, key)
            if value:
                out[key] = dict(value) if isinstance(value, dict) else value
        return out


def details_for(hub: "Hub", client_id: str, name: str, contract: "Contract | None") -> ClientDetails:
    """The billing details of ``client_id`` (named ``name``): its PSA company's, then its contract's."""
    return ClientDetails(name)
