"""Column mapping: what each file column fills on a lead, suggested from header names in
Japanese and English, and the cleaners that turn a cell into a stored value.

A target is "lead.<field>", "company.<field>", "activity.occurred_at", "custom.<key>" or
"" (ignore the column). Cleaners raise NormalizationError with a message for the user;
the engine puts it in the row's error report.
"""

import datetime
import re
import unicodedata
from collections.abc import Callable

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from leads import normalize
from leads.models import CustomFieldDefinition
from leads.normalize import NormalizationError
from leads.services.leads import prefecture_code

# Target → label shown in the mapping step.
LEAD_TARGETS: dict[str, object] = {
    "lead.email": gettext_lazy("Email"),
    "lead.full_name": gettext_lazy("Full name (family and given, split at the space)"),
    "lead.family_name": gettext_lazy("Family name"),
    "lead.given_name": gettext_lazy("Given name"),
    "lead.full_name_kana": gettext_lazy("Full name (kana)"),
    "lead.family_name_kana": gettext_lazy("Family name (kana)"),
    "lead.given_name_kana": gettext_lazy("Given name (kana)"),
    "lead.phone": gettext_lazy("Phone"),
    "lead.job_title": gettext_lazy("Job title"),
    "lead.department": gettext_lazy("Department"),
    "lead.company_name": gettext_lazy("Company name"),
    "lead.corporate_number": gettext_lazy("Corporate number (法人番号)"),
    "lead.company_domain": gettext_lazy("Company website or domain"),
    "lead.prefecture": gettext_lazy("Prefecture"),
    "lead.industry": gettext_lazy("Industry"),
    "lead.tags": gettext_lazy("Tags (comma-separated)"),
    "activity.occurred_at": gettext_lazy("Date of the visit or response"),
}


def _words(text: str) -> list[str]:
    return text.split()


# Header words per target, compared after folding (NFKC, lower case, no spaces or
# punctuation). Exact matches win over the substring rules below.
SYNONYMS: dict[str, list[str]] = {
    "lead.email": _words(
        "email e-mail mail emailaddress e-mailaddress mailaddress メール メールアドレス eメール "
        "eメールアドレス 電子メール mailadress メアド 連絡先メール"
    ),
    "lead.full_name": _words(
        "name fullname 氏名 名前 お名前 担当者名 担当者 ご担当者名 contactname 氏名漢字"
    ),
    "lead.family_name": _words("lastname familyname surname 姓 苗字 名字 氏 氏名姓 姓漢字"),
    "lead.given_name": _words("firstname givenname 名 氏名名 名漢字 下の名前"),
    "lead.full_name_kana": _words(
        "フリガナ ふりがな カナ 氏名カナ 氏名フリガナ よみがな 読み furigana kana shimeikana"
    ),
    "lead.family_name_kana": _words(
        "セイ 姓カナ 姓フリガナ せい 姓ふりがな lastnamekana familynamekana フリガナ姓 フリガナセイ"
    ),
    "lead.given_name_kana": _words(
        "メイ 名カナ 名フリガナ めい 名ふりがな firstnamekana givennamekana フリガナ名 フリガナメイ"
    ),
    "lead.phone": _words(
        "phone tel telephone phonenumber telno 電話 電話番号 tel番号 携帯 携帯電話 携帯番号 mobile "
        "mobilephone 直通電話 代表電話 連絡先電話番号 連絡先"
    ),
    "lead.job_title": _words("title jobtitle position 役職 役職名 肩書 肩書き 職位 職種"),
    "lead.department": _words("department dept division 部署 部署名 所属 所属部署 部門 部課"),
    "lead.company_name": _words(
        "company companyname organization organisation account accountname 会社 会社名 企業 企業名 "
        "法人名 勤務先 勤務先名 社名 貴社名 御社名 団体名 組織名"
    ),
    "lead.corporate_number": _words("法人番号 corporatenumber houjinbangou corporateno 法人no"),
    "lead.company_domain": _words(
        "url website web domain ドメイン ホームページ hp 会社url webサイト "
        "ウェブサイト サイト 会社hp companywebsite"
    ),
    "lead.prefecture": _words("prefecture state 都道府県 県 都道府県名 所在地都道府県"),
    "lead.industry": _words("industry 業種 業界 業種名"),
    "lead.tags": _words("tags tag タグ ラベル labels"),
    "activity.occurred_at": _words(
        "date visitdate 来場日 来場日時 日付 名刺交換日 交換日 参加日 訪問日 "
        "受付日 登録日 responsedate"
    ),
}

_FOLD_DROP = re.compile(r"[\s_\-・.:：()（）【】\[\]「」/／]+")


def fold_header(name: str) -> str:
    return _FOLD_DROP.sub("", unicodedata.normalize("NFKC", name).casefold())


_EXACT = {fold_header(word): target for target, words in SYNONYMS.items() for word in words}

# Substring rules for headers no list names ("ご担当者 メールアドレス", "会社名（漢字）"):
# the first that matches wins, so the specific ones come first.
_CONTAINS: list[tuple[str, str]] = [
    ("法人番号", "lead.corporate_number"),
    ("mail", "lead.email"),
    ("メール", "lead.email"),
    ("セイ", "lead.family_name_kana"),
    ("メイ", "lead.given_name_kana"),
    ("フリガナ", "lead.full_name_kana"),
    ("ふりがな", "lead.full_name_kana"),
    ("kana", "lead.full_name_kana"),
    ("電話", "lead.phone"),
    ("tel", "lead.phone"),
    ("phone", "lead.phone"),
    ("会社", "lead.company_name"),
    ("企業", "lead.company_name"),
    ("company", "lead.company_name"),
    ("部署", "lead.department"),
    ("department", "lead.department"),
    ("役職", "lead.job_title"),
    ("title", "lead.job_title"),
    ("url", "lead.company_domain"),
    ("ドメイン", "lead.company_domain"),
    ("都道府県", "lead.prefecture"),
    ("氏名", "lead.full_name"),
    ("名前", "lead.full_name"),
    ("lastname", "lead.family_name"),
    ("firstname", "lead.given_name"),
    ("業種", "lead.industry"),
    ("来場", "activity.occurred_at"),
]


def suggest_mapping(header: list[str], custom_fields: list[CustomFieldDefinition]) -> dict:
    """Column name → suggested target ('' when nothing fits). Each target is suggested
    for one column only (the first that names it), so a second 'TEL' stays unmapped
    rather than overwriting the first."""
    custom_by_fold = {}
    for definition in custom_fields:
        custom_by_fold.setdefault(fold_header(definition.label), f"custom.{definition.key}")
        custom_by_fold.setdefault(fold_header(definition.key), f"custom.{definition.key}")
    mapping: dict[str, str] = {}
    used: set[str] = set()
    folded = [fold_header(name) for name in header]
    for index, name in enumerate(header):
        key = folded[index]
        target = custom_by_fold.get(key) or _EXACT.get(key) or ""
        if not target:
            # A header merged over two columns: 「氏名」「氏名 (2)」 are family and given.
            repeat = re.fullmatch(r"(.+) \(2\)", name)
            base = fold_header(repeat[1]) if repeat else ""
            if base and _EXACT.get(base) == "lead.full_name":
                target = "lead.given_name"
            elif base and _EXACT.get(base) == "lead.full_name_kana":
                target = "lead.given_name_kana"
        if not target:
            target = next((t for word, t in _CONTAINS if word in key), "")
        if target == "lead.full_name" and folded[index + 1 : index + 2] == [key + "2"]:
            target = "lead.family_name"
        elif target == "lead.full_name_kana" and folded[index + 1 : index + 2] == [key + "2"]:
            target = "lead.family_name_kana"
        if target in used:
            target = ""
        if target:
            used.add(target)
        mapping[name] = target
    return mapping


def available_targets(custom_fields: list[CustomFieldDefinition]) -> dict[str, str]:
    targets = {key: str(label) for key, label in LEAD_TARGETS.items()}
    for definition in custom_fields:
        targets[f"custom.{definition.key}"] = definition.label
    return targets


def validate_mapping(
    mapping: dict, header: list[str], custom_fields: list[CustomFieldDefinition]
) -> dict[str, str]:
    """Errors by column name; {} when the mapping can be used."""
    errors: dict[str, str] = {}
    targets = available_targets(custom_fields)
    seen: dict[str, str] = {}
    for column, target in mapping.items():
        if column not in header:
            errors[column] = _("The file has no column named %(column)s.") % {"column": column}
        elif target and target not in targets:
            errors[column] = _("Unknown target %(target)s.") % {"target": target}
        elif target and target != "lead.tags" and target in seen:
            errors[column] = _("%(target)s is already filled from column %(other)s.") % {
                "target": target,
                "other": seen[target],
            }
        elif target:
            seen[target] = column
    mapped = set(seen)
    if not mapped & {"lead.email", "lead.full_name", "lead.family_name"}:
        errors["mapping"] = _("Map at least the email or the name column.")
    return errors


# --- Cleaners -----------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def clean_text(raw: str) -> str:
    """NFKC (full-width letters and digits, half-width kana), one space, trimmed."""
    if raw.isascii():
        return (
            raw.strip()
            if "  " not in raw and "\t" not in raw and "\n" not in raw
            else (" ".join(raw.split()))
        )
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", raw)).strip()


_SIMPLE_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)


def clean_email(raw: str) -> str:
    """normalize_email with a fast path: a plain ASCII address is already in the form
    email-validator would give (lower-cased by us), so 100,000 of them do not each pay
    for the full syntax check."""
    value = raw.strip().lower() if raw.isascii() else clean_text(raw).lower()
    if len(value) <= 254 and _SIMPLE_EMAIL.fullmatch(value) and len(value.split("@")[0]) <= 64:
        return value
    return normalize.normalize_email(raw)


_PHONE_NOISE = re.compile(r"[\s\-‐ー－()（）.]+")


def phone_cleaner(region: str) -> Callable[[str], str]:
    """normalize_phone, with a fast path for Japanese numbers and the repair of the
    leading 0 Excel drops from a number it took for an integer (312345678 → 03-1234-5678)."""

    def clean_phone(raw: str) -> str:
        value = _PHONE_NOISE.sub("", clean_text(raw))
        if not value:
            return ""
        if region == "JP" and value.isdigit():
            if value[0] != "0" and len(value) in (9, 10):
                value = "0" + value  # the 0 Excel dropped
            if value[0] == "0" and value[1] != "0" and len(value) in (10, 11):
                return "+81" + value[1:]
        return normalize.normalize_phone(value, region)

    return clean_phone


_EXPONENT = re.compile(r"^\d(?:\.\d+)?e\+?\d+$", re.IGNORECASE)


def clean_corporate_number(raw: str) -> str:
    value = clean_text(raw)
    if _EXPONENT.match(value) or (value.endswith(".0") and value[:-2].isdigit()):
        # Excel showed 13 digits as 5.83568E+12 and saved that: the digits are gone.
        raise NormalizationError(
            _(
                "The corporate number %(value)s was turned into a rounded number by the "
                "spreadsheet; its digits cannot be recovered. Format the column as text and "
                "export again."
            )
            % {"value": raw}
        )
    return normalize.normalize_corporate_number(value)


def clean_domain(raw: str) -> str:
    value = normalize.normalize_domain(raw)
    if value and ("." not in value or " " in value):
        raise NormalizationError(_("not a website or domain: %(value)r") % {"value": raw})
    return value


def clean_prefecture(raw: str) -> str:
    """A prefecture name (Japanese or English), code, or an address starting with one."""
    value = clean_text(raw)
    try:
        return prefecture_code(value, allow_address=True)
    except ValueError:
        raise NormalizationError(_("not a prefecture: %(value)r") % {"value": raw}) from None


_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日", "%Y%m%d", "%d.%m.%Y")
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M")
# Excel's day zero (its serials count from 1899-12-30, after the 1900 leap-year bug).
EXCEL_EPOCH = datetime.date(1899, 12, 30)


_YMD = re.compile(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?")


def parse_date(raw: str) -> datetime.datetime:
    """A date or date-time as spreadsheets write them, including Excel serials (45413 =
    2024-05-01) that arrive when the cell was formatted as a number."""
    value = clean_text(raw)
    plain = _YMD.fullmatch(value)
    if plain:  # the common case, without strptime's cost
        try:
            return datetime.datetime(int(plain[1]), int(plain[2]), int(plain[3]))
        except ValueError:
            raise NormalizationError(_("not a date: %(value)r") % {"value": raw}) from None
    if re.fullmatch(r"\d{5}(\.\d+)?", value) and 20000 <= float(value) <= 80000:
        serial = float(value)
        moment = datetime.datetime.combine(EXCEL_EPOCH, datetime.time()) + datetime.timedelta(
            days=serial
        )
        return moment.replace(microsecond=0)
    value = value.replace("T", " ")
    for pattern in _DATETIME_FORMATS:
        try:
            return datetime.datetime.strptime(value[:19], pattern)
        except ValueError:
            continue
    for pattern in _DATE_FORMATS:
        try:
            return datetime.datetime.strptime(value, pattern)
        except ValueError:
            continue
    raise NormalizationError(_("not a date: %(value)r") % {"value": raw})
