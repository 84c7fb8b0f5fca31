"""The raw bytes of a nurture mail, written directly for its one fixed shape.

Every nurture mail has the same structure: a handful of ASCII headers, a subject and
a sender name that are often Japanese, and a UTF-8 text body with an optional HTML
alternative. The email package builds such a mail as a tree of header objects,
parses every header it was given and refolds it on output: 2–3 ms a mail, most of a
dispatcher's time per mail. Here the same standards are written out by hand:

- non-ASCII header text as RFC 2047 encoded words (UTF-8, base64), split on
  character boundaries, each word at most 75 characters and each line at most 76;
- header lines otherwise kept whole up to RFC 5322's 998 characters (a
  List-Unsubscribe URL must stay a URL, never become an encoded word);
- bodies canonical (CRLF line ends): 7bit when ASCII with short lines, else base64
  (RFC 2045), so every byte on the wire is 7-bit;
- multipart/alternative (RFC 2046) with a boundary that cannot occur in the parts.

Anything outside that shape (attachments, Cc, other alternatives, non-ASCII
addresses, non-ASCII extra headers) is not handled here: `serialise` returns None
and the caller uses the email package. The result is wrapped in `SerialisedMessage`,
which Django's SMTP, console and file backends accept where they expect the email
package's message (they only call `as_bytes`); anything else parses it on demand.
"""

import binascii
import email
import email.policy
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

# RFC 2047 2: an encoded word is at most 75 characters, a line holding one at most 76.
_MAX_WORD = 75
_MAX_ENCODED_LINE = 76
_WORD_OVERHEAD = len("=?utf-8?b??=")
_FOLD_AT = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters
_BASE64_LINE_BYTES = 57  # 76 characters per base64 line (RFC 2045 6.8)
# RFC 5322 specials: a display name holding one is written as a quoted string.
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
_QUOTED_ESCAPES = re.compile(r'[\\"]')
_WORD_LIKE = "=?"  # ASCII text that a decoder could take for an encoded word


def _has_line_break(value: str) -> bool:
    return "\r" in value or "\n" in value


def _word_bytes(room: int) -> int:
    """How many bytes of UTF-8 an encoded word of at most `room` characters holds."""
    return (min(room, _MAX_WORD) - _WORD_OVERHEAD) // 4 * 3


def encoded_words(text: str, first_room: int = _MAX_WORD) -> list[str]:
    """RFC 2047 encoded words ("B" encoding, UTF-8) holding `text`, as few as the line
    lengths allow: the first fills `first_room` characters (what the header's name
    leaves), the others a line each. Few words matter: Python's address parser keeps
    the space between two encoded words of a display name (RFC 2047 6.2 drops it)."""
    data = text.encode("utf-8")
    words, start = [], 0
    room = first_room
    while start < len(data):
        end = min(start + _word_bytes(room), len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # not inside a character
            end -= 1
        chunk = binascii.b2a_base64(data[start:end], newline=False).decode("ascii")
        words.append(f"=?utf-8?b?{chunk}?=")
        start, room = end, _MAX_ENCODED_LINE - 1  # a continuation line starts with a space
    return words


def _fold_words(name: str, words: Sequence[str], tail: str = "") -> str:
    """`Name: w1 w2 … tail` with a line break before each word that would pass the
    limit (whitespace between encoded words is not part of the decoded text)."""
    lines = [f"{name}:"]
    limit = _MAX_ENCODED_LINE if any(w.startswith("=?") for w in words) else _FOLD_AT
    for word in [*words, *([tail] if tail else [])]:
        if len(lines[-1]) + 1 + len(word) > limit and lines[-1] != f"{name}:":
            lines.append(" " + word)
        else:
            lines[-1] += " " + word
    return "\r\n".join(lines)


def header_text(name: str, value: str) -> str:
    """An unstructured header (Subject): as it is when plain ASCII, else encoded."""
    if _has_line_break(value):
        raise ValueError("Header values may not contain linefeed or carriage return characters")
    if value.isascii() and _WORD_LIKE not in value and value.isprintable():
        # Folded only where a word follows a space (a line of only spaces is not
        # allowed); a run of spaces stays on one line.
        words = value.split(" ")
        merged = [words[0]]
        for word in words[1:]:
            if word and merged[-1]:
                merged.append(word)
            else:
                merged[-1] += " " + word
        return _fold_words(name, merged)
    return _fold_words(name, encoded_words(value, _MAX_ENCODED_LINE - len(name) - 2))


def header_address(name: str, display_name: str, addr_spec: str) -> str:
    """A mailbox header (From): the display name encoded, quoted or bare as RFC 5322
    and 2047 ask; the address itself must be ASCII (checked by the caller)."""
    if _has_line_break(display_name) or _has_line_break(addr_spec):
        raise ValueError("Header values may not contain linefeed or carriage return characters")
    if not display_name:
        return f"{name}: {addr_spec}"
    if display_name.isascii() and display_name.isprintable():
        if _SPECIALS.search(display_name) or _WORD_LIKE in display_name:
            display_name = '"' + _QUOTED_ESCAPES.sub(r"\\\g<0>", display_name) + '"'
        return f"{name}: {display_name} <{addr_spec}>"
    words = encoded_words(display_name, _MAX_ENCODED_LINE - len(name) - 2)
    return _fold_words(name, words, f"<{addr_spec}>")


def _canonical_lines(text: str) -> list[bytes]:
    return text.encode("utf-8").splitlines()


def body_part(text: str, subtype: str) -> tuple[list[str], bytes]:
    """(headers, encoded body) of a text part: 7bit when every line is ASCII and at
    most 78 characters, else base64 of the text with CRLF line ends."""
    lines = _canonical_lines(text)
    content_type = f'Content-Type: text/{subtype}; charset="utf-8"'
    if text.isascii() and "\0" not in text and all(len(line) <= _FOLD_AT for line in lines):
        body = b"\r\n".join(lines) + b"\r\n"
        return [content_type, "Content-Transfer-Encoding: 7bit"], body
    data = b"\r\n".join(lines) + b"\r\n"
    encoded = b"".join(
        binascii.b2a_base64(data[i : i + _BASE64_LINE_BYTES], newline=False) + b"\r\n"
        for i in range(0, len(data), _BASE64_LINE_BYTES)
    )
    return [content_type, "Content-Transfer-Encoding: base64"], encoded


def _boundary(parts: Iterable[bytes]) -> str:
    # "=_" never occurs in base64 text and the random part makes a 7bit body holding
    # it practically impossible; checked all the same.
    while True:
        boundary = "=_ryorin_" + secrets.token_hex(12)
        marker = ("--" + boundary).encode("ascii")
        if not any(marker in part for part in parts):
            return boundary


def serialise(
    *,
    subject: str,
    from_name: str,
    from_addr: str,
    to: Sequence[str],
    reply_to: Sequence[str],
    extra_headers: dict[str, str],
    text: str,
    html: str | None,
    date: datetime | None = None,
    linesep: str = "\r\n",
) -> bytes | None:
    """The mail's bytes, or None when it is not of the shape written here (the caller
    then uses the email package)."""
    addresses = [from_addr, *to, *reply_to]
    if not all(isinstance(a, str) and a.isascii() and a.isprintable() for a in addresses):
        return None
    if not all(
        isinstance(v, str) and v.isascii() and v.isprintable() for v in extra_headers.values()
    ):
        return None
    names = {key.lower() for key in extra_headers}
    if names & {"from", "to", "cc", "bcc", "reply-to", "subject", "content-type", "mime-version"}:
        return None

    headers = ["MIME-Version: 1.0"]
    text_headers, text_body = body_part(text, "plain")
    if html:
        html_headers, html_body = body_part(html, "html")
        boundary = _boundary((text_body, html_body))
        headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    else:
        headers.extend(text_headers)
    headers.append(header_text("Subject", subject))
    headers.append(header_address("From", from_name, from_addr))
    if to:
        headers.append(f"To: {', '.join(to)}")
    if reply_to:
        headers.append(f"Reply-To: {', '.join(reply_to)}")
    if "date" not in names:
        headers.append(f"Date: {format_datetime(date or datetime.now(UTC))}")
    for name, value in extra_headers.items():
        headers.append(f"{name}: {value}")
    head = "\r\n".join(headers).encode("ascii") + b"\r\n\r\n"
    if html:
        # The CRLF before a delimiter belongs to it (RFC 2046 5.1.1): the extra one
        # keeps each body's own last line end.
        delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
        raw = b"".join(
            [
                head,
                delimiter[2:],
                "\r\n".join(text_headers).encode("ascii") + b"\r\n\r\n",
                text_body,
                delimiter,
                "\r\n".join(html_headers).encode("ascii") + b"\r\n\r\n",
                html_body,
                f"\r\n--{boundary}--\r\n".encode("ascii"),
            ]
        )
    else:
        raw = head + text_body
    return raw if linesep == "\r\n" else raw.replace(b"\r\n", linesep.encode("ascii"))


class SerialisedMessage:
    """Stands in for `email.message.EmailMessage` where a Django backend expects one:
    `as_bytes()`/`as_string()` give the bytes written above; reading headers or parts
    parses them with the email package first (only tests and tools do that)."""

    def __init__(self, raw: bytes, policy: email.policy.Policy = email.policy.default):
        self._raw = raw
        self._policy = policy
        self._parsed: email.message.EmailMessage | None = None

    def as_bytes(self, unixfrom: bool = False, policy=None) -> bytes:
        return self._raw

    def as_string(self, unixfrom: bool = False, maxheaderlen=None, policy=None) -> str:
        return self._raw.decode("ascii")

    def __bytes__(self) -> bytes:
        return self._raw

    def __str__(self) -> str:
        return self.as_string()

    @property
    def parsed(self) -> email.message.EmailMessage:
        if self._parsed is None:
            self._parsed = email.message_from_bytes(self._raw, policy=self._policy)
        return self._parsed

    def __getattr__(self, name: str):
        if name.startswith("_"):  # not set yet (copy, pickle): never parse for these
            raise AttributeError(name)
        return getattr(self.parsed, name)

    def __getitem__(self, name: str):
        return self.parsed[name]

    def __contains__(self, name: str) -> bool:
        return name in self.parsed

    def __iter__(self):
        return iter(self.parsed)

    def __len__(self) -> int:
        return len(self.parsed)
