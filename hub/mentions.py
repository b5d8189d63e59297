"""The MSP's legal mentions on an invoice: footer, custom fields and locale, from ``[billing.invoice]``.

A French business-to-business invoice must show the seller's identity (legal name, address, SIREN
or SIRET, intra-community VAT number, RCS and share capital for a company), the payment terms, the
late-payment penalty rate and the fixed indemnity for recovery costs (Code de commerce L441-9 and
D441-5: 40 EUR), and the early-payment discount (none, usually). ``invoice_mentions`` writes them in
the MSP's language within what Stripe takes: at most 4 custom fields, each name at most 40 and each
value at most 140 characters, a footer of at most 5000 characters.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hub import i18n
from hub.config import InvoiceSettings
from hub.errors import ConfigError

MAX_CUSTOM_FIELDS, MAX_FIELD_NAME, MAX_FIELD_VALUE, MAX_FOOTER = 4, 40, 140, 5000


def _grouped(digits: str) -> str:
    """``123456789`` -> ``123 456 789``; a SIRET keeps its 5-digit establishment number apart."""
    siren, rest = digits[:9], digits[9:]
    out = " ".join(siren[i:i + 3] for i in range(0, 9, 3))
    return f"{out} {rest}" if rest else out


def _euros(amount: str, language: str) -> str:
    """``40`` -> ``40 €`` (French) or ``40 EUR``; cents only when there are some."""
    value = Decimal(str(amount).strip())
    text = f"{value:.2f}" if value != value.to_integral_value() else str(int(value))
    return f"{text.replace('.', ',')} €" if language == "fr" else f"{text} EUR"


def invoice_mentions(settings: InvoiceSettings, language: str | None = None) -> dict[str, Any]:
    """The legal mentions an invoice carries, in ``language`` (default: the settings' own).

    Returns only the keys with a value (none: the invoice is as before): ``footer`` (the mentions,
    then the MSP's free ``footer``), ``custom_fields`` (``[{"name", "value"}]``: the company's
    identifiers and the payment terms, shown in the invoice's header) and ``locale`` (the customers'
    default preferred locale). Raises ConfigError naming the key if a limit of Stripe's is passed.
    """
    lang = language or settings.language
    out: dict[str, Any] = {}
    fields: list[dict[str, str]] = []
    lines: list[str] = []
    if settings.has_mentions:
        t = lambda key, **kw: i18n.text(key, lang, **kw)   # noqa: E731
        name = settings.legal_name
        if name and settings.share_capital:
            name = t("mention.company_capital", name=name, capital=settings.share_capital)
        identity = [v for v in (name, settings.address) if v]
        if identity:
            lines.append(", ".join(identity))
        ids: list[tuple[str, str]] = []
        if settings.siret:
            ids.append((t("mention.siret"), _grouped(settings.siret)))
        elif settings.siren:
            ids.append((t("mention.siren"), _grouped(settings.siren)))
        if settings.vat_number:
            ids.append((t("mention.vat"), settings.vat_number))
        if settings.rcs:
            ids.append((t("mention.rcs"), settings.rcs))
        # At most 3 identifiers and the payment terms: within Stripe's 4 custom fields.
        if ids:
            lines.append(" · ".join(value if name == t("mention.rcs") else f"{name} {value}" for name, value in ids))
        fields = [{"name": name, "value": value} for name, value in ids]
        terms = []
        if settings.payment_terms:
            terms.append(t("mention.terms", terms=settings.payment_terms))
            fields.append({"name": t("mention.payment_terms"), "value": settings.payment_terms})
        terms.append(t("mention.discount", text=settings.early_payment_discount or t("mention.discount_default")))
        lines.append(" ".join(terms))
        lines.append(" ".join((t("mention.penalty", rate=settings.late_penalty or t("mention.penalty_default")),
                               t("mention.indemnity", amount=_euros(settings.recovery_indemnity, lang)))))
    if settings.footer:
        lines.append(settings.footer)
    footer = "\n".join(lines)
    if len(footer) > MAX_FOOTER:
        raise ConfigError(f"the invoice footer is {len(footer)} characters long; Stripe takes at most {MAX_FOOTER}",
                          key="billing.invoice.footer", fix="shorten footer")
    for f in fields:
        if len(f["name"]) > MAX_FIELD_NAME or len(f["value"]) > MAX_FIELD_VALUE:
            raise ConfigError(f"the invoice field {f['name']!r} is longer than Stripe takes (name {MAX_FIELD_NAME}, "
                              f"value {MAX_FIELD_VALUE} characters)", key="billing.invoice", fix="shorten it")
    if footer:
        out["footer"] = footer
    if fields:
        out["custom_fields"] = fields
    locale = settings.locale or ("fr-FR" if lang == "fr" else None)
    if locale:
        out["locale"] = locale
    return out


__all__ = ["MAX_CUSTOM_FIELDS", "MAX_FIELD_NAME", "MAX_FIELD_VALUE", "MAX_FOOTER", "invoice_mentions"]
