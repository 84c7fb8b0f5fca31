"""What a webhook URL may point at (SSRF guard).

Tenants choose the URL, and the request leaves from inside our network, so in production
a URL must be https and every address its host resolves to must be public: no private,
loopback, link-local (cloud metadata), multicast or reserved address. The check runs at
send time, on the addresses actually connected to: the request goes to the resolved IP
(with the Host header and TLS SNI of the name), so a DNS answer that changes between
check and connect (rebinding) cannot slip through. Redirects are never followed.
settings.WEBHOOK_ALLOW_PRIVATE_URLS (development, tests, the benchmark) allows http and
local addresses.
"""

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils.translation import gettext_lazy as _


class RefusedURL(ValueError):
    """The URL may not be requested (scheme or address not allowed)."""


def private_allowed() -> bool:
    return bool(settings.WEBHOOK_ALLOW_PRIVATE_URLS)


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def validate_webhook_url(url: str) -> None:
    """Checks that need no DNS, for the create and update forms (raises ValidationError)."""
    URLValidator(schemes=["http", "https"])(url)
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ValidationError(_("The URL must not contain a user name or password."))
    if private_allowed():
        return
    if parts.scheme != "https":
        raise ValidationError(_("The URL must use https."))
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise ValidationError(_("The URL must point at a public address."))
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return
    if not _is_public(str(literal)):
        raise ValidationError(_("The URL must point at a public address."))


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send: the URL to request, plus the Host header and SNI when pinned."""

    url: str
    headers: dict = field(default_factory=dict)
    extensions: dict = field(default_factory=dict)


def resolve_target(url: str) -> Target:
    """The request target for `url`, or RefusedURL. OSError when the name does not resolve."""
    if private_allowed():
        return Target(url=url)
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise RefusedURL("only https URLs are allowed")
    port = parts.port or 443
    infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise OSError(f"{parts.hostname} has no address")
    refused = [address for address in addresses if not _is_public(address)]
    if refused:
        raise RefusedURL(f"{parts.hostname} resolves to a non-public address ({refused[0]})")
    address = addresses[0]
    host_literal = f"[{address}]" if ":" in address else address
    netloc = f"{host_literal}:{parts.port}" if parts.port else host_literal
    host_header = parts.hostname + (f":{parts.port}" if parts.port else "")
    return Target(
        url=urlunsplit(parts._replace(netloc=netloc)),
        headers={"Host": host_header},
        extensions={"sni_hostname": parts.hostname},
    )
