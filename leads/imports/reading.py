"""Reading lead lists as spreadsheet tools export them: CSV/TSV in any of the encodings
Japanese and other offices produce, and XLSX workbooks.

Everything here turns a file into (row number, list of cell strings): the row number is
the one the spreadsheet shows (header = row 1), so the error report points at the row a
person can find. Values stay raw strings (XLSX dates become ISO text); cleaning is the
mapping's job.
"""

import codecs
import csv
import datetime
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from charset_normalizer import from_bytes
from django.utils.translation import gettext as _

# csv's default field limit (128 KiB) is below what a pasted note can hold in Excel.
csv.field_size_limit(10 * 1024 * 1024)

XLSX_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls (and other OLE files)
MAX_COLUMNS = 200


class FileReadError(ValueError):
    """The file cannot be read as a lead list; the message says why, for the user."""


@dataclass
class Table:
    """A file's header and an iterator over its data rows."""

    header: list[str]
    rows: Iterator[tuple[int, list[str]]]
    encoding: str = ""
    sheet: str = ""
    sheets: list[str] = field(default_factory=list)


def detect_format(name: str, head: bytes) -> str:
    """'csv' or 'xlsx', from the bytes first (a renamed file still reads), then the name."""
    if head.startswith(XLSX_MAGIC):
        return "xlsx"
    if head.startswith(OLE_MAGIC):
        raise FileReadError(
            _("This is an old Excel (.xls) file. Save it as .xlsx or CSV and upload it again.")
        )
    lowered = name.lower()
    if lowered.endswith((".xlsx", ".xlsm")):
        raise FileReadError(_("The file is named .xlsx but is not an Excel workbook."))
    if b"\x00" in head[:4096] and not _has_utf16_bom(head) and not _looks_utf16(head):
        raise FileReadError(_("This is not a CSV or XLSX file."))
    return "csv"


# --- CSV ----------------------------------------------------------------------------------


def _has_utf16_bom(data: bytes) -> bool:
    return data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))


def _looks_utf16(data: bytes) -> bool:
    # UTF-16 without a BOM: every other byte of ASCII text is zero.
    sample = data[:2000]
    return len(sample) >= 4 and sample[1::2].count(0) > len(sample) // 4


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding name). BOMs first, then strict UTF-8 (the modern default), then
    charset-normalizer; Shift_JIS guesses widen to CP932, which Excel actually writes
    (it adds ①, ㈱, NEC/IBM kanji that plain Shift_JIS lacks)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="strict"), "utf-8-sig"
    if _has_utf16_bom(data):
        return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    candidates: list[str] = []
    if _looks_utf16(data):
        candidates += ["utf-16-le", "utf-16-be"]
    best = from_bytes(data[:200_000]).best()
    if best is not None:
        guessed = best.encoding.lower().replace("-", "_")
        if guessed in ("shift_jis", "cp932", "shift_jis_2004", "shift_jisx0213"):
            guessed = "cp932"
        candidates.append(guessed)
    # Japanese offices' defaults, in order of how often they appear.
    candidates += ["cp932", "euc_jp", "cp1252"]
    for encoding in dict.fromkeys(candidates):
        try:
            return data.decode(encoding), _display_encoding(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    raise FileReadError(_("The file's text encoding could not be recognised."))


def _display_encoding(encoding: str) -> str:
    return {"cp932": "cp932 (Shift_JIS)", "euc_jp": "euc-jp"}.get(encoding, encoding)


def _sniff_delimiter(text: str) -> str:
    """The separator that splits the header line into the most cells (outside quotes)."""
    first = _first_record(text)
    counts = dict.fromkeys((",", "\t", ";"), 0)
    quoted = False
    for char in first:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _first_record(text: str) -> str:
    # The header line, with quoted line breaks inside it kept (they are rare but real).
    quoted = False
    for index, char in enumerate(text[:100_000]):
        if char == '"':
            quoted = not quoted
        elif char in "\r\n" and not quoted and text[:index].strip():
            return text[:index]
    return text[:100_000]


def read_csv(data: bytes) -> Table:
    text, encoding = decode(data)
    if not text.strip():
        raise FileReadError(_("The file is empty."))
    delimiter = _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        records = enumerate(reader, start=1)
        for _number, record in records:
            if any(cell.strip() for cell in record):
                header = clean_header(record)
                break
        else:
            raise FileReadError(_("The file has no header row."))
    except csv.Error as exc:
        raise FileReadError(_("The file is not valid CSV: %(error)s") % {"error": exc}) from exc

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            yield from records
        except csv.Error as exc:
            raise FileReadError(
                _("The file is not valid CSV after row %(row)s: %(error)s")
                % {"row": reader.line_num, "error": exc}
            ) from exc

    return Table(header=header, rows=rows(), encoding=encoding)


# --- XLSX ---------------------------------------------------------------------------------

_CELL_REF = re.compile(r"([A-Z]+)(\d+)")
_MERGE_REF = re.compile(rb'<mergeCell ref="([A-Z]+\d+):([A-Z]+\d+)"')


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - 64
    return index - 1


def _merged_ranges(archive: zipfile.ZipFile, sheet_path: str) -> list[tuple[int, int, int, int]]:
    """(min_row, min_col, max_row, max_col) of the sheet's merged cells, 1-based rows and
    0-based columns. Read-only mode does not parse merges, and they sit after all the
    cell data, so the sheet's XML is scanned for them in chunks."""
    ranges = []
    tail = b""
    with archive.open(sheet_path) as stream:
        while chunk := stream.read(1 << 20):
            buffer = tail + chunk
            for start, end in _MERGE_REF.findall(buffer):
                first = _CELL_REF.fullmatch(start.decode())
                last = _CELL_REF.fullmatch(end.decode())
                if first and last:
                    ranges.append(
                        (
                            int(first[2]),
                            _column_index(first[1]),
                            int(last[2]),
                            _column_index(last[1]),
                        )
                    )
            tail = buffer[-200:] if len(buffer) > 200 else buffer
            # A match straddling the chunk edge is found again with the tail; dedupe.
    return sorted(set(ranges))


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def read_xlsx(data: bytes, sheet_name: str = "") -> Table:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken workbook
        raise FileReadError(
            _("The workbook could not be opened: %(error)s") % {"error": exc}
        ) from exc
    names = list(workbook.sheetnames)
    if sheet_name:
        if sheet_name not in names:
            raise FileReadError(
                _("The workbook has no sheet named %(sheet)s.") % {"sheet": sheet_name}
            )
        chosen = [sheet_name]
    else:
        chosen = names
    for name in chosen:
        worksheet = workbook[name]
        iterator = worksheet.iter_rows(values_only=True)
        first_rows: list[tuple[int, list[str]]] = []
        for number, values in enumerate(iterator, start=1):
            cells = [_cell_text(value) for value in values[:MAX_COLUMNS]]
            first_rows.append((number, cells))
            if any(cell.strip() for cell in cells):
                break
        if not first_rows or not any(c.strip() for c in first_rows[-1][1]):
            continue  # an empty sheet: try the next one
        header_number, header_cells = first_rows[-1]
        merges = _sheet_merges(workbook, data, name)
        second = next(iterator, None)
        pending: list[tuple[int, list[str]]] = []
        if second is not None:
            second_cells = [_cell_text(value) for value in second[:MAX_COLUMNS]]
            if _two_row_header(merges, header_number, header_cells, second_cells):
                header_cells = _combine_header(merges, header_number, header_cells, second_cells)
            else:
                header_cells = _fill_merged(merges, header_number, header_cells)
                pending.append((header_number + 1, second_cells))
        else:
            header_cells = _fill_merged(merges, header_number, header_cells)
        header = clean_header(header_cells)

        def rows(iterator=iterator, pending=pending, start=header_number + 2):
            yield from pending
            for number, values in enumerate(iterator, start=start):
                yield number, [_cell_text(value) for value in values[:MAX_COLUMNS]]
            workbook.close()

        return Table(header=header, rows=rows(), sheet=name, sheets=names)
    workbook.close()
    raise FileReadError(_("Every sheet of the workbook is empty."))


def _sheet_merges(workbook, data: bytes, name: str) -> list[tuple[int, int, int, int]]:
    path = getattr(workbook[name], "_worksheet_path", None)
    if not path:
        return []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        try:
            return _merged_ranges(archive, path.lstrip("/"))
        except KeyError:
            return []


def _two_row_header(merges, row: int, top: list[str], bottom: list[str]) -> bool:
    """A grouped header: a title merged across columns over sub-titles in the next row
    (例: 「氏名」 over 「姓」「名」), or a title merged down over both header rows."""
    vertical = any(r1 == row and r2 == row + 1 for r1, _c1, r2, _c2 in merges)
    if vertical:
        return True
    if any(_looks_like_data(cell) for cell in bottom):
        return False
    for r1, c1, r2, c2 in merges:
        if r1 == row and r2 == row and c2 > c1:
            under = bottom[c1 : c2 + 1]
            if len(under) == c2 - c1 + 1 and all(cell.strip() for cell in under):
                return True
    return False


def _looks_like_data(cell: str) -> bool:
    value = cell.strip()
    return "@" in value or any(char.isdigit() for char in value)


def _fill_merged(merges, row: int, cells: list[str]) -> list[str]:
    """A header title merged across columns names each of them ('氏名', '氏名 (2)')."""
    cells = list(cells)
    for r1, c1, r2, c2 in merges:
        if r1 <= row <= r2 and c1 < len(cells):
            title = cells[c1]
            for offset, column in enumerate(range(c1 + 1, min(c2 + 1, len(cells))), start=2):
                if not cells[column].strip():
                    cells[column] = f"{title} ({offset})"
    return cells


def _combine_header(merges, row: int, top: list[str], bottom: list[str]) -> list[str]:
    width = max(len(top), len(bottom))
    top = top + [""] * (width - len(top))
    bottom = bottom + [""] * (width - len(bottom))
    group = list(top)
    for r1, c1, r2, c2 in merges:
        if r1 == row and r2 == row:
            for column in range(c1 + 1, min(c2 + 1, width)):
                group[column] = top[c1]
    combined = []
    for column in range(width):
        if bottom[column].strip() and group[column].strip():
            combined.append(f"{group[column]} {bottom[column]}")
        else:
            combined.append(bottom[column] or group[column])
    return combined


# --- Both ---------------------------------------------------------------------------------


def clean_header(cells: list[str]) -> list[str]:
    """Trimmed names; trailing empty columns dropped; blanks and repeats made unique."""
    names = [" ".join(str(cell).split()) for cell in cells[:MAX_COLUMNS]]
    while names and not names[-1]:
        names.pop()
    seen: dict[str, int] = {}
    result = []
    for index, name in enumerate(names, start=1):
        name = name or _("Column %(number)s") % {"number": index}
        count = seen.get(name, 0) + 1
        seen[name] = count
        result.append(name if count == 1 else f"{name} ({count})")
    return result


def read_table(data: bytes, file_format: str, sheet_name: str = "") -> Table:
    if file_format == "xlsx":
        return read_xlsx(data, sheet_name)
    return read_csv(data)
