"""The Japanese catalogue is complete: every string the code marks has a translation."""

import subprocess
from pathlib import Path

CATALOGUE = Path(__file__).resolve().parent.parent / "locale/ja/LC_MESSAGES/django.po"


def entries(*flags: str) -> list[str]:
    output = subprocess.run(
        ["msgattrib", *flags, "--no-obsolete", str(CATALOGUE)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # The header entry (msgid "") is always printed; the rest are offenders.
    return [
        line for line in output.splitlines() if line.startswith("msgid ") and line != 'msgid ""'
    ]


def test_no_untranslated_entries():
    assert entries("--untranslated") == []


def test_no_fuzzy_entries():
    assert entries("--only-fuzzy") == []


def test_catalogue_compiles_cleanly():
    subprocess.run(["msgfmt", "--check", "-o", "/dev/null", str(CATALOGUE)], check=True)
