"""Reading real-world lead-list files: encodings, delimiters, XLSX quirks, mapping
suggestions and cell cleaning (no database needed)."""

import datetime

import pytest
from django.utils import translation

from leads.imports import mapping
from leads.imports.reading import FileReadError, detect_format, read_csv, read_table, read_xlsx
from leads.normalize import NormalizationError
from leads.tests.files import HEADER_JA, ROWS_JA, VISIT_DAY, csv_bytes, xlsx_bytes


@pytest.fixture(autouse=True)
def _messages_in_english():
    """The assertions read the English messages (the app's default language is Japanese)."""
    with translation.override("en"):
        yield


def rows_of(table) -> list:
    return list(table.rows)


@pytest.mark.parametrize(
    ("encoding", "delimiter", "expected"),
    [
        ("cp932", ",", "cp932 (Shift_JIS)"),
        ("utf-8-sig", ",", "utf-8-sig"),
        ("utf-8", ",", "utf-8"),
        ("utf-16", "\t", "utf-16"),
        ("utf-8", ";", "utf-8"),
    ],
)
def test_csv_in_every_encoding_and_delimiter_reads_the_same(encoding, delimiter, expected):
    table = read_csv(csv_bytes(HEADER_JA, ROWS_JA, encoding=encoding, delimiter=delimiter))
    assert table.encoding == expected
    assert table.header == HEADER_JA
    rows = rows_of(table)
    assert [number for number, _ in rows] == [2, 3]
    assert rows[0][1][0] == "株式会社両輪商事"
    # The quoted line break stays inside its cell; the row number stays the record's.
    assert rows[1][1][5] == "総務部\n人事課"


def test_cp932_specific_characters_survive():
    # ㈱ and ① exist in CP932 (what Excel Japan writes) but not in plain Shift_JIS.
    data = csv_bytes(["会社名", "email"], [["㈱両輪①", "a@ryorin.co.jp"]], encoding="cp932")
    rows = rows_of(read_csv(data))
    assert rows[0][1][0] == "㈱両輪①"


def test_trailing_empty_columns_and_rows_and_blank_header_names():
    text = "email,,名前,,\r\na@example.com,,x,,\r\n,,,,\r\n\r\n"
    table = read_csv(text.encode())
    assert table.header == ["email", "Column 2", "名前"]
    rows = rows_of(table)
    assert rows[0] == (2, ["a@example.com", "", "x", "", ""])


def test_duplicate_header_names_are_made_unique():
    table = read_csv(b"TEL,TEL,email\r\n1,2,a@b.jp\r\n")
    assert table.header == ["TEL", "TEL (2)", "email"]


def test_legacy_xls_and_binary_files_are_refused_clearly():
    with pytest.raises(FileReadError, match=r"\.xls"):
        detect_format("list.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    with pytest.raises(FileReadError, match="not an Excel workbook"):
        detect_format("list.xlsx", b"hello")
    assert detect_format("renamed.csv", b"PK\x03\x04rest") == "xlsx"
    with pytest.raises(FileReadError, match="empty"):
        read_csv(b"   \r\n")


def test_xlsx_picks_the_first_non_empty_sheet_and_keeps_dates():
    data = xlsx_bytes(
        {
            "表紙": [],
            "来場者": [["会社名", "メール", "来場日"], ["両輪商事", "a@ryorin.co.jp", VISIT_DAY]],
            "別シート": [["x"], ["y"]],
        }
    )
    table = read_xlsx(data)
    assert table.sheet == "来場者"
    assert table.sheets == ["表紙", "来場者", "別シート"]
    assert table.header == ["会社名", "メール", "来場日"]
    assert rows_of(table) == [(2, ["両輪商事", "a@ryorin.co.jp", "2024-05-01"])]
    chosen = read_table(data, "xlsx", "別シート")
    assert chosen.header == ["x"]
    assert rows_of(chosen) == [(2, ["y"])]
    with pytest.raises(FileReadError, match="no sheet"):
        read_xlsx(data, "missing")


def test_xlsx_numbers_read_as_spreadsheets_show_them():
    data = xlsx_bytes({"s": [["TEL", "法人番号", "serial"], [312345678, 5.83568e12, 45413]]})
    rows = rows_of(read_xlsx(data))
    # 5.83568E+12 is an integer-valued float: read as digits, the check digit then fails.
    assert rows[0][1][:2] == ["312345678", "5835680000000"]
    assert mapping.parse_date(rows[0][1][2]).date() == datetime.date(2024, 5, 1)


def test_xlsx_merged_title_over_two_columns_names_both():
    data = xlsx_bytes(
        {"s": [["氏名", None, "メール"], ["山田", "太郎", "t@ryorin.co.jp"]]}, {"s": ["A1:B1"]}
    )
    table = read_xlsx(data)
    assert table.header == ["氏名", "氏名 (2)", "メール"]
    assert mapping.suggest_mapping(table.header, [])["氏名 (2)"] == "lead.given_name"
    assert rows_of(table) == [(2, ["山田", "太郎", "t@ryorin.co.jp"])]


def test_xlsx_two_row_grouped_header():
    data = xlsx_bytes(
        {
            "s": [
                ["会社名", "氏名", None, "連絡先", None],
                [None, "姓", "名", "メール", "電話"],
                ["両輪", "山田", "太郎", "t@ryorin.co.jp", "0312345678"],
            ]
        },
        {"s": ["A1:A2", "B1:C1", "D1:E1"]},
    )
    table = read_xlsx(data)
    assert table.header == ["会社名", "氏名 姓", "氏名 名", "連絡先 メール", "連絡先 電話"]
    assert rows_of(table) == [(3, ["両輪", "山田", "太郎", "t@ryorin.co.jp", "0312345678"])]
    suggested = mapping.suggest_mapping(table.header, [])
    assert suggested["連絡先 メール"] == "lead.email"
    assert suggested["連絡先 電話"] == "lead.phone"
    assert suggested["会社名"] == "lead.company_name"


def test_suggestions_in_japanese_and_english():
    ja = mapping.suggest_mapping(
        ["会社名", "姓", "名", "セイ", "メイ", "E-mail", "TEL", "部署", "役職", "法人番号",
         "都道府県", "URL", "来場日", "備考"],
        [],
    )  # fmt: skip
    assert ja == {
        "会社名": "lead.company_name",
        "姓": "lead.family_name",
        "名": "lead.given_name",
        "セイ": "lead.family_name_kana",
        "メイ": "lead.given_name_kana",
        "E-mail": "lead.email",
        "TEL": "lead.phone",
        "部署": "lead.department",
        "役職": "lead.job_title",
        "法人番号": "lead.corporate_number",
        "都道府県": "lead.prefecture",
        "URL": "lead.company_domain",
        "来場日": "activity.occurred_at",
        "備考": "",
    }
    en = mapping.suggest_mapping(["Email address", "Company", "Last name", "First Name"], [])
    assert en == {
        "Email address": "lead.email",
        "Company": "lead.company_name",
        "Last name": "lead.family_name",
        "First Name": "lead.given_name",
    }


def test_cleaners_fix_what_excel_mangles_and_refuse_what_it_destroyed():
    phone = mapping.phone_cleaner("JP")
    assert phone("312345678") == "+81312345678"  # the leading 0 Excel dropped
    assert phone("9012345678") == "+819012345678"
    assert phone("０３−１２３４−５６７８") == "+81312345678"
    assert phone("+1 415 555 2671") == "+14155552671"
    assert mapping.clean_email(" ＴＡＲＯ@Ryorin.co.jp ") == "taro@ryorin.co.jp"
    with pytest.raises(NormalizationError):
        mapping.clean_email("taro@")
    with pytest.raises(NormalizationError, match="cannot be recovered"):
        mapping.clean_corporate_number("5.83568E+12")
    assert mapping.clean_corporate_number("7000-0120-50002") == "7000012050002"
    assert mapping.clean_prefecture("東京都") == "13"
    assert mapping.clean_prefecture("大阪") == "27"
    assert mapping.clean_prefecture("Hokkaido") == "01"
    assert mapping.clean_prefecture("神奈川県横浜市西区") == "14"
    assert mapping.clean_domain("https://www.Ryorin.co.jp/about") == "ryorin.co.jp"
    assert mapping.parse_date("2024年5月1日").date() == datetime.date(2024, 5, 1)
    assert mapping.parse_date("2024/05/01 10:30").hour == 10
