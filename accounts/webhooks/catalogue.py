"""The event names a webhook endpoint may subscribe to: a registry apps extend.

An app that emits an event registers its name (and a label for the settings page) with
`register_event_type`, usually from its AppConfig.ready(); accounts must not import
the apps above it, so it cannot list their events itself. "*" subscribes to every
event, including names registered later. Registering a name again replaces its label.
"""

from dataclasses import dataclass

from django.utils.functional import Promise

ALL_EVENTS = "*"
TEST_EVENT = "webhook.test"


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    label: str | Promise


_catalogue: dict[str, EventType] = {}


def register_event_type(name: str, label: str | Promise) -> None:
    """Make `name` subscribable (idempotent)."""
    if not name or name == ALL_EVENTS or " " in name:
        raise ValueError(f"not an event name: {name!r}")
    _catalogue[name] = EventType(name=name, label=label)


def event_types() -> list[EventType]:
    return sorted(_catalogue.values(), key=lambda event_type: event_type.name)


def is_subscribable(name: str) -> bool:
    return name == ALL_EVENTS or name in _catalogue
