import pytest

from leads.normalize import (
    NormalizationError,
    company_domain_from_email,
    normalize_company_name,
    normalize_corporate_number,
    normalize_domain,
    normalize_email,
    normalize_phone,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Tanaka@Example.co.jp ", "tanaka@example.co.jp"),
        ("ＴＡＮＡＫＡ＠ＥＸＡＭＰＬＥ．ＣＯ．ＪＰ", "tanaka@example.co.jp"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_normalize_email(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["tanaka", "tanaka@", "@example.com", "a b@example.com x@"])
def test_bad_email_says_why(raw):
    with pytest.raises(NormalizationError, match="not a valid email address"):
        normalize_email(raw)


def test_free_mail_implies_no_company():
    assert company_domain_from_email("a@gmail.com") == ""
    assert company_domain_from_email("a@docomo.ne.jp") == ""
    assert company_domain_from_email("a@ryorin.co.jp") == "ryorin.co.jp"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("03-1234-5678", "+81312345678"),
        ("０３（１２３４）５６７８", "+81312345678"),
        ("090-1234-5678", "+819012345678"),
        ("+1 415 555 2671", "+14155552671"),
        ("", ""),
    ],
)
def test_normalize_phone(raw, expected):
    assert normalize_phone(raw) == expected


def test_bad_phone():
    with pytest.raises(NormalizationError, match="phone"):
        normalize_phone("call me")


def test_corporate_number_check_digit():
    assert normalize_corporate_number("5835678256246") == "5835678256246"
    assert normalize_corporate_number("５８３５６７８２５６２４６") == "5835678256246"
    with pytest.raises(NormalizationError, match="法人番号"):
        normalize_corporate_number("5835678256247")
    with pytest.raises(NormalizationError, match="法人番号"):
        normalize_corporate_number("12345")
    assert normalize_corporate_number("") == ""


@pytest.mark.parametrize(
    "name",
    ["両輪商事株式会社", "（株）両輪商事", "㈱両輪商事", "両輪商事 株式会社", "株式会社 両輪商事"],
)
def test_japanese_legal_forms_fold_away(name):
    assert normalize_company_name(name) == "両輪商事"


@pytest.mark.parametrize(
    "name",
    [
        "Ryorin Trading Co., Ltd.",
        "RYORIN TRADING",
        "Ryorin Trading Inc.",
        "ｒｙｏｒｉｎ　ｔｒａｄｉｎｇ",
    ],
)
def test_english_legal_forms_and_width_fold_away(name):
    assert normalize_company_name(name) == "ryorintrading"


def test_legal_form_inside_a_word_is_kept():
    # "inc" inside "Lincoln" is not a legal form.
    assert normalize_company_name("Lincoln Corp.") == "lincoln"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("https://www.Example.co.jp/about", "example.co.jp"), ("example.com:8080", "example.com")],
)
def test_normalize_domain(raw, expected):
    assert normalize_domain(raw) == expected
