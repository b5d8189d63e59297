"""Who an invoice is addressed to: a client's billing details (address, VAT number, e-mail, locale).

They come from the PSA company the client is linked to (its address, tax identifier and billing
e-mail, pulled with the clients stream onto the ``Client`` record), and a contract of
``contracts.toml`` may set or override each one (``email``, ``vat_number``, ``locale`` and an
``[clients.<id>.address]`` table). A contract's key wins; a contract's address replaces the PSA's
whole (a street from one and a city from the other would be nobody's address). ``sources`` says
where each field came from.

A VAT number is normalised: spaces, dots and hyphens removed, upper case, its country prefix kept;
a number without one gets the prefix of the address's country (Greece's is ``EL``), which
``sources`` says. What the PSA holds is never refused here: a malformed e-mail or VAT number, or a
country the hub cannot code, is kept as read and named in ``problems`` (with the fix), and the
tax decision holds what it must. The same mistakes in ``contracts.toml`` are configuration errors
naming the key (``hub.mappings``), which hold the client like any contract error.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.config import table_label
from hub.connectors import client_master
from hub.linking import normalise_name

if TYPE_CHECKING:  # pragma: no cover
    from hub.records import Client

ADDRESS_KEYS = ("line1", "line2", "city", "postal_code", "state", "country")

# ISO 3166-1 alpha-2 codes of the countries an MSP's clients are in: every EU member, the rest of
# Europe around it, North America and a few more. Names as PSAs write them (English, French and the
# country's own), compared without case, accents or punctuation.
COUNTRIES: dict[str, tuple[str, ...]] = {
    "AT": ("Austria", "Autriche", "Österreich"), "BE": ("Belgium", "Belgique", "België", "Belgien"),
    "BG": ("Bulgaria", "Bulgarie"), "HR": ("Croatia", "Croatie", "Hrvatska"), "CY": ("Cyprus", "Chypre"),
    "CZ": ("Czechia", "Czech Republic", "République tchèque", "Tchéquie", "Česko"),
    "DK": ("Denmark", "Danemark", "Danmark"), "EE": ("Estonia", "Estonie", "Eesti"),
    "FI": ("Finland", "Finlande", "Suomi"), "FR": ("France", "République française"),
    "DE": ("Germany", "Allemagne", "Deutschland"), "GR": ("Greece", "Grèce", "Hellas", "Ellada"),
    "HU": ("Hungary", "Hongrie", "Magyarország"), "IE": ("Ireland", "Irlande", "Republic of Ireland", "Éire"),
    "IT": ("Italy", "Italie", "Italia"), "LV": ("Latvia", "Lettonie", "Latvija"),
    "LT": ("Lithuania", "Lituanie", "Lietuva"), "LU": ("Luxembourg", "Luxemburg"),
    "MT": ("Malta", "Malte"), "NL": ("Netherlands", "The Netherlands", "Pays-Bas", "Nederland", "Holland"),
    "PL": ("Poland", "Pologne", "Polska"), "PT": ("Portugal",), "RO": ("Romania", "Roumanie", "România"),
    "SK": ("Slovakia", "Slovaquie", "Slovensko"), "SI": ("Slovenia", "Slovénie", "Slovenija"),
    "ES": ("Spain", "Espagne", "España"), "SE": ("Sweden", "Suède", "Sverige"),
    "GB": ("United Kingdom", "UK", "Great Britain", "Royaume-Uni", "England", "Scotland", "Wales",
           "Northern Ireland"),
    "CH": ("Switzerland", "Suisse", "Schweiz", "Svizzera"), "NO": ("Norway", "Norvège", "Norge"),
    "IS": ("Iceland", "Islande"), "LI": ("Liechtenstein",), "MC": ("Monaco",), "AD": ("Andorra", "Andorre"),
    "SM": ("San Marino", "Saint-Marin"), "VA": ("Vatican", "Holy See", "Vatican City"),
    "US": ("United States", "United States of America", "USA", "US", "États-Unis", "America"),
    "CA": ("Canada",), "MX": ("Mexico", "Mexique"), "AU": ("Australia", "Australie"),
    "NZ": ("New Zealand", "Nouvelle-Zélande"), "MA": ("Morocco", "Maroc"), "TN": ("Tunisia", "Tunisie"),
    "DZ": ("Algeria", "Algérie"), "SN": ("Senegal", "Sénégal"), "CI": ("Côte d'Ivoire", "Ivory Coast"),
    "IL": ("Israel", "Israël"), "TR": ("Turkey", "Türkiye", "Turquie"), "UA": ("Ukraine",),
    "RS": ("Serbia", "Serbie"), "AL": ("Albania", "Albanie"), "JP": ("Japan", "Japon"),
    "CN": ("China", "Chine"), "IN": ("India", "Inde"), "SG": ("Singapore", "Singapour"),
    "AE": ("United Arab Emirates", "UAE", "Émirats arabes unis"), "BR": ("Brazil", "Brésil"),
    "ZA": ("South Africa", "Afrique du Sud"),
}
EU = frozenset("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split())
# The VAT prefix of a country where it is not its ISO code.
VAT_PREFIX = {"GR": "EL"}
# The form of a VAT number after its prefix, where it is fixed (else 2 to 13 letters and digits).
_VAT_FORMS = {
    "AT": r"U\d{8}", "BE": r"[01]\d{9}", "BG": r"\d{9,10}", "CY": r"\d{8}[A-Z]", "CZ": r"\d{8,10}",
    "DE": r"\d{9}", "DK": r"\d{8}", "EE": r"\d{9}", "EL": r"\d{9}", "ES": r"[0-9A-Z]\d{7}[0-9A-Z]",
    "FI": r"\d{8}", "FR": r"[0-9A-HJ-NP-Z]{2}\d{9}", "HR": r"\d{11}", "HU": r"\d{8}", "IE": r"\d[0-9A-Z+*]\d{5}[A-Z]{1,2}",
    "IT": r"\d{11}", "LT": r"\d{9}|\d{12}", "LU": r"\d{8}", "LV": r"\d{11}", "MT": r"\d{8}", "NL": r"\d{9}B\d{2}",
    "PL": r"\d{10}", "PT": r"\d{9}", "RO": r"\d{2,10}", "SE": r"\d{12}", "SI": r"\d{8}", "SK": r"\d{10}",
    "GB": r"\d{9}|\d{12}|GD\d{3}|HA\d{3}", "XI": r"\d{9}|\d{12}", "CH": r"E\d{9}(MWST|TVA|IVA)?",
    "NO": r"\d{9}(MVA)?",
}
_EMAIL = re.compile(r"[^@\s,;<>()\[\]]+@[^@\s,;<>()\[\]]+\.[A-Za-z]{2,}")
_LOCALE = re.compile(r"[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|\d{3}))?")


def _fold(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


_BY_NAME = {_fold(n): code for code, names in COUNTRIES.items() for n in names}


def country_code(value: Any) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country given by its code or its name, or None.

    ``"FR"``, ``"fr"``, ``"France"``, ``"Allemagne"``, ``"United States of America"`` are coded;
    a name the table does not know is None (the caller keeps the name and says so).
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if len(text) == 2 and text.isalpha():
        code = text.upper()
        code = "GR" if code == "EL" else code
        if code in COUNTRIES:
            return code
    return _BY_NAME.get(_fold(text))


def is_email(value: Any) -> bool:
    return isinstance(value, str) and _EMAIL.fullmatch(value.strip()) is not None


def is_locale(value: Any) -> bool:
    return isinstance(value, str) and _LOCALE.fullmatch(value) is not None


def vat_prefix(country: str) -> str:
    """The VAT number prefix of an ISO country code (Greece: ``EL``)."""
    return VAT_PREFIX.get(country, country)


def clean_vat(value: str) -> str:
    """A VAT number without spaces, dots or hyphens, upper case (``fr 40.303 265 045`` -> ``FR40303265045``)."""
    return re.sub(r"[\s.\-/]", "", value).upper()


def vat_problem(number: str) -> str | None:
    """Why a cleaned VAT number is not one (None when its form is right). A number without a
    country prefix is judged by its digits only."""
    if not re.fullmatch(r"[0-9A-Z+*]{4,16}", number):
        return "has characters a VAT number never has" if not re.fullmatch(r"[0-9A-Z+*]*", number) \
            else "is too short or too long for a VAT number"
    prefix = number[:2] if number[:2].isalpha() else None
    if prefix is None:
        return None if re.fullmatch(r"[0-9A-Z]{2,14}", number) else "is not a VAT number"
    if prefix == "GR":
        return "starts with GR, but Greek VAT numbers start with EL"
    form = _VAT_FORMS.get(prefix)
    rest = number[2:]
    if form is not None and not re.fullmatch(form, rest):
        return f"does not have the form of a {prefix} VAT number"
    if form is None and not re.fullmatch(r"[0-9A-Z+*]{2,13}", rest):
        return "is not a VAT number"
    return None


def with_prefix(number: str, country: str | None) -> tuple[str, str | None]:
    """(number with its country prefix, the prefix added or None). A number that has one keeps
    it; without one and without a country, it is returned as it is."""
    if number[:2].isalpha() or not country:
        return number, None
    prefix = vat_prefix(country)
    return prefix + number, prefix


@dataclass(frozen=True)
class ClientDetails:
    """A client's billing details; None where nothing says.

    ``address``: ``line1``, ``line2``, ``city``, ``postal_code``, ``state``, ``country`` (ISO
    3166-1 alpha-2), as far as known. ``vat_number``: with its country prefix (``DE123456789``).
    ``locale``: a BCP 47 tag (``fr-FR``). ``sources``: for each field, where it came from
    (``connectwise company 250``, ``contracts.toml [clients.acme]``). ``problems``: for each field
    the PSA gave in a form that cannot be used (an e-mail that is not one, a malformed VAT number,
    a country the hub cannot code: ``address`` then keeps the name as read), what is wrong and the
    fix; the value is kept as read.
    """

    name: str
    email: str | None = None
    address: dict[str, str] | None = None
    vat_number: str | None = None
    locale: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def country(self) -> str | None:
        return (self.address or {}).get("country") or None

    @property
    def country_known(self) -> bool:
        """Whether the address's country is an ISO code (False: none, or a name the hub cannot code)."""
        return self.country is not None and "country" not in self.problems

    @property
    def in_eu(self) -> bool | None:
        """Whether the address is in the EU; None when its country is not known."""
        return (self.country in EU) if self.country_known else None

    def to_payload(self) -> dict[str, Any]:
        """The ``customer`` block of an invoice payload (keys with a value only)."""
        out: dict[str, Any] = {"name": self.name}
        for key in ("email", "address", "vat_number", "locale"):
            value = getattr(self, key)
            if value:
                out[key] = dict(value) if isinstance(value, dict) else value
        return out


def psa_company(hub: Any, client_id: str, name: str, contract: Any,
                psa_id: str | None = None) -> "Client | None":
    """The PSA company record of a hub client: ``psa_id`` when the caller knows it (the registry's
    link), else the contract's link, else the company a PSA-only client stands for
    (``connectwise-250``), else the one PSA company of the same name (as linking matches)."""
    psa = client_master(hub)
    if psa is None:
        return None
    sid = psa_id or (contract.links.get(psa) if contract is not None else None)
    if sid is None and client_id.startswith(f"{psa}-"):
        sid = client_id[len(psa) + 1:]
    if sid is not None:
        found = list(hub.store.iter_records("clients", psa, where="source_id = ?", args=[str(sid)]))
        return found[0] if found else None
    key = normalise_name(name)
    same = [c for c in hub.store.iter_records("clients", psa) if normalise_name(c.name) == key]
    return same[0] if len(same) == 1 else None


def _from_company(company: "Client") -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """(fields, sources, problems) of a PSA company record."""
    label = f"{company.source} company {company.source_id}"
    fields: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: dict[str, str] = {}
    where = f"the company's record in {company.source} (id {company.source_id})"
    address = {k: v for k, v in (("line1", company.address_line1), ("line2", company.address_line2),
                                 ("city", company.city), ("postal_code", company.postal_code),
                                 ("state", company.state)) if v}
    if company.country:
        code = country_code(company.country)
        address["country"] = code or company.country
        if code is None:
            problems["country"] = (f"{label}: the hub cannot tell which country {company.country!r} is, so the "
                                   f"client's tax cannot be decided; fix: correct the country in {where}, or set "
                                   f"country = \"<ISO code>\" in [clients.<id>.address] of contracts.toml")
    if address:
        fields["address"], sources["address"] = address, label
    if company.email:
        fields["email"] = company.email.strip()
        sources["email"] = label + (f" {company.email_from}" if company.email_from else "")
        if not is_email(fields["email"]):
            problems["email"] = (f"{sources['email']}: {company.email!r} is not an e-mail address; fix: correct "
                                 f"it in {company.source}, or set email in contracts.toml [clients.<id>]")
    if company.vat_number:
        number = clean_vat(company.vat_number)
        fields["vat_number"], sources["vat_number"] = number, f"{label} taxIdentifier" \
            if company.source == "connectwise" else label
        why = vat_problem(number)
        if why:
            fields["vat_number"] = company.vat_number
            problems["vat_number"] = (f"{sources['vat_number']}: {company.vat_number!r} {why}; fix: correct it "
                                      f"in {company.source}, or set vat_number in contracts.toml [clients.<id>]")
    return fields, sources, problems


def details_for(hub: Any, client_id: str, name: str, contract: Any, *,
                psa_id: str | None = None) -> ClientDetails:
    """The billing details of ``client_id`` (named ``name``): its PSA company's, then its contract's.

    ``psa_id``: the client's PSA company id when the caller has it (``Registry`` links); else it
    is found from the contract's links, the client's id or its name (see ``psa_company``).
    """
    fields: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: dict[str, str] = {}
    company = psa_company(hub, client_id, name, contract, psa_id)
    if company is not None:
        fields, sources, problems = _from_company(company)
        problems = {k: v.replace("[clients.<id>]", f"[clients.{client_id}]")
                    .replace("[clients.<id>.address]", f"[clients.{client_id}.address]") for k, v in problems.items()}
    # The contract's own keys; a contract read from a PSA agreement has none, but the client's
    # table in contracts.toml may still set them.
    if not getattr(contract, "details", None):
        contract = getattr(hub.mappings, "contracts", {}).get(client_id) or contract
    own = dict(getattr(contract, "details", None) or {}) if contract is not None else {}
    if own:
        label = table_label(contract.file, ("clients", contract.client_id)) if contract.file \
            else f"contracts.toml [clients.{contract.client_id}]"
        for key in ("email", "vat_number", "locale", "address"):
            if own.get(key):
                fields[key] = dict(own[key]) if key == "address" else own[key]
                sources[key] = label if key != "address" else f"{label[:-1]}.address]"
                problems.pop(key, None)
                if key == "address":
                    problems.pop("country", None)
    number = fields.get("vat_number")
    if number and "vat_number" not in problems:
        country = (fields.get("address") or {}).get("country")
        coded = country if "country" not in problems else None
        full, added = with_prefix(number, coded)
        if added:
            fields["vat_number"] = full
            sources["vat_number"] += f" (prefix {added} added: the address's country)"
            why = vat_problem(full)
            if why:
                problems["vat_number"] = (f"{sources['vat_number']}: VAT number {full!r} {why}; fix: write the "
                                          f"client's VAT number (not another company identifier) with its prefix")
        elif not number[:2].isalpha():
            problems["vat_number"] = (f"{sources['vat_number']}: VAT number {number!r} has no country prefix and "
                                      f"the client's country is not known; fix: write it with its prefix "
                                      f"(FR..., DE...) or give the address's country")
    return ClientDetails(name, email=fields.get("email"), address=fields.get("address"),
                         vat_number=fields.get("vat_number"), locale=fields.get("locale"),
                         sources=sources, problems=problems)
