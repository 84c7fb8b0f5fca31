"""Normalising what people type (and what spreadsheets export) into matching keys.

Used by every path that writes leads and companies — the API, hosted forms, imports —
so that "ＴＡＮＡＫＡ@Example.co.jp", "tanaka@example.co.jp " and a business card's
"（株）両輪商事" land on the same lead and company.
"""

import re
import unicodedata

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.jp import cn as corporate_number_module


class NormalizationError(ValueError):
    """A value that cannot be normalised; the message says why, for the user."""


def fold(value: str) -> str:
    """NFKC: full-width ASCII to half-width, half-width kana to full-width, one space."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", value or "")).strip()


def normalize_email(raw: str) -> str:
    """Lower-cased, width-folded and syntax-checked email address; '' when blank."""
    value = fold(raw).replace(" ", "")
    if not value:
        return ""
    try:
        # Syntax only: deliverability would need DNS, which imports must not wait for.
        result = validate_email(value, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise NormalizationError(f"not a valid email address: {raw!r} ({exc})") from exc
    return result.normalized.lower()


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[1] if "@" in email else ""


# Mailbox providers: a lead's address there says nothing about their company.
FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.co.jp",
        "yahoo.com",
        "ymail.ne.jp",
        "hotmail.com",
        "hotmail.co.jp",
        "outlook.com",
        "outlook.jp",
        "live.jp",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "protonmail.com",
        "proton.me",
        "docomo.ne.jp",
        "ezweb.ne.jp",
        "au.com",
        "softbank.ne.jp",
        "i.softbank.jp",
        "nifty.com",
        "biglobe.ne.jp",
        "ocn.ne.jp",
        "so-net.ne.jp",
        "excite.co.jp",
        "infoseek.jp",
        "mail.com",
        "gmx.com",
        "gmx.de",
        "qq.com",
        "163.com",
        "naver.com",
    }
)


def company_domain_from_email(email: str) -> str:
    """The company domain an email implies, or '' for free-mail providers."""
    domain = email_domain(email)
    return "" if domain in FREE_MAIL_DOMAINS else domain


def normalize_domain(raw: str) -> str:
    """'https://www.Example.co.jp/about' → 'example.co.jp'."""
    value = fold(raw).lower()
    value = re.sub(r"^[a-z][a-z0-9+.-]*://", "", value)
    value = value.split("/", 1)[0].split("?", 1)[0].split(":", 1)[0]
    value = value.removeprefix("www.")
    return value.strip(".")


def normalize_phone(raw: str, region: str = "JP") -> str:
    """E.164 ('+81312345678'); '' when blank. Japanese numbers may omit the +81."""
    value = fold(raw)
    if not value:
        return ""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise NormalizationError(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_possible_number(number):
        raise NormalizationError(f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_corporate_number(raw: str) -> str:
    """法人番号: 13 digits with a valid check digit; '' when blank."""
    value = fold(raw).replace("-", "").replace(" ", "")
    if not value:
        return ""
    try:
        return corporate_number_module.validate(value)
    except StdnumValidationError as exc:
        raise NormalizationError(
            f"not a valid corporate number (法人番号): {raw!r} ({exc.message})"
        ) from exc


# Legal-form words, in the forms people write them, removed for matching only.
_LEGAL_FORMS = [
    "株式会社",
    "有限会社",
    "合同会社",
    "合資会社",
    "合名会社",
    "一般社団法人",
    "一般財団法人",
    "公益社団法人",
    "公益財団法人",
    "特定非営利活動法人",
    "npo法人",
    "医療法人",
    "学校法人",
    "社会福祉法人",
    "(株)",
    "(有)",
    "(同)",
    "(社)",
    "(財)",
    "㈱",
    "㈲",
    "co., ltd.",
    "co.,ltd.",
    "co. ltd.",
    "co ltd",
    "company limited",
    "limited",
    "ltd.",
    "ltd",
    "incorporated",
    "inc.",
    "inc",
    "corporation",
    "corp.",
    "corp",
    "k.k.",
    "kk",
    "g.k.",
    "llc",
    "l.l.c.",
    "gmbh",
    "s.a.",
    "plc",
    "pte. ltd.",
    "pte ltd",
]
_LEGAL_FORM_PATTERN = re.compile(
    "|".join(
        (r"(?<![a-z0-9])" + re.escape(form) + r"(?![a-z0-9])")
        if form[0].isascii() and form[0].isalpha()
        else re.escape(form)
        for form in sorted(_LEGAL_FORMS, key=len, reverse=True)
    )
)
_PUNCTUATION = re.compile(r"[\s\-‐－・.,，、。'\"’&＆()（）\[\]【】「」/／_]+")


def normalize_company_name(name: str) -> str:
    """A matching key: width- and case-folded, legal-form words and punctuation gone.

    '（株）両輪商事', '両輪商事株式会社' and '両輪商事 株式会社' → '両輪商事';
    'Ryorin Trading Co., Ltd.' and 'RYORIN TRADING' → 'ryorintrading'.
    """
    value = fold(name).casefold()
    value = _LEGAL_FORM_PATTERN.sub(" ", value)
    return _PUNCTUATION.sub("", value)
