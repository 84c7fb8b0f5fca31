"""Currencies and amounts of campaign money (budget, actual cost).

ISO 4217 codes in circulation, with their minor units: an amount may not carry more
decimals than its currency has (¥1,000.50 is not an amount of yen), nor more than the
two the columns keep.
"""

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


def _codes(text: str) -> list[str]:
    return text.split()


# Currencies whose minor unit is not the usual hundredth.
_MINOR_UNITS_EXCEPTIONS = {
    **dict.fromkeys(
        _codes("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"), 0
    ),
    **dict.fromkeys(_codes("BHD IQD JOD KWD LYD OMR TND"), 3),
    **dict.fromkeys(_codes("CLF UYW"), 4),
}

ISO_4217 = frozenset(
    _codes(
        """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD
    EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD
    IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL
    MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
    PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN
    SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYI UYU UYW UZS VES VND VUV
    WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """
    )
)

#: Decimal places the money columns keep, and the bound their 14 digits set.
STORED_DECIMALS = 2
AMOUNT_LIMIT = Decimal(10) ** (14 - STORED_DECIMALS)


def minor_units(currency: str) -> int:
    """Decimals an amount in `currency` may carry (capped at what the columns keep)."""
    return min(_MINOR_UNITS_EXCEPTIONS.get(currency, 2), STORED_DECIMALS)


def validate_currency(value: str) -> str:
    """The ISO 4217 code, upper-cased; raises ValidationError for anything else."""
    code = (value or "").strip().upper()
    if code not in ISO_4217:
        raise ValidationError(
            _("%(value)s is not an ISO 4217 currency code (such as JPY or USD)."),
            code="invalid_currency",
            params={"value": value},
        )
    return code


def to_money(value: object) -> Decimal:
    """An amount as a Decimal. Floats are refused: binary fractions are not money."""
    if isinstance(value, bool | float):
        raise ValidationError(_("Give amounts as decimal strings, not floats."), code="invalid")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError(_("Enter an amount."), code="invalid") from None
    if not amount.is_finite():
        raise ValidationError(_("Enter an amount."), code="invalid")
    return amount


def validate_amount(amount: Decimal, currency: str) -> None:
    """Non-negative, and no finer than the currency's minor unit."""
    if amount < 0:
        raise ValidationError(_("Amounts cannot be negative."), code="min_value")
    if amount >= AMOUNT_LIMIT:
        raise ValidationError(
            _("Amounts must be less than %(limit)s."),
            code="max_value",
            params={"limit": f"{AMOUNT_LIMIT:,}"},
        )
    exponent = amount.normalize().as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if decimals > minor_units(currency):
        raise ValidationError(
            _("%(currency)s amounts take at most %(places)d decimal places."),
            code="max_decimal_places",
            params={"currency": currency, "places": minor_units(currency)},
        )
