"""Forms of the staff web UI. They validate input; the services do the work."""

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.models import TIME_ZONE_CHOICES, APIKey, Role, User


class LoginForm(AuthenticationForm):
    """Email and password. Emails are stored lowercased, so compare them that way."""

    username = forms.EmailField(
        label=_("Email address"),
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}),
    )

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()


class TenantForm(forms.Form):
    name = forms.CharField(label=_("Company name"), max_length=200)
    time_zone = forms.ChoiceField(
        label=_("Time zone"), choices=TIME_ZONE_CHOICES, initial="Asia/Tokyo"
    )
    language = forms.ChoiceField(label=_("Language"), choices=settings.LANGUAGES, initial="ja")


class InvitationForm(forms.Form):
    email = forms.EmailField(label=_("Email address"))
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.MARKETING)

    def __init__(self, *args, role_choices: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = role_choices


class RoleForm(forms.Form):
    """The inline role select of one member row (many per page, so no ids)."""

    role = forms.ChoiceField(
        label=_("Role"),
        choices=Role.choices,
        widget=forms.Select(attrs={"aria-label": _("Role")}),
    )

    def __init__(self, *args, role_choices: list[tuple[str, str]], **kwargs) -> None:
        kwargs.setdefault("auto_id", False)
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = role_choices


class StaffChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return f"{obj.full_name} <{obj.email}>" if obj.full_name else obj.email


class AgencyAccessForm(forms.Form):
    """Grant one staff member of the managing agency access to this client. `staff` is
    selectors.agency_staff_grantable(client): anyone else is refused as an invalid choice."""

    user = StaffChoiceField(
        label=_("Agency staff member"),
        queryset=User.objects.none(),
        empty_label=_("Choose a staff member"),
        error_messages={
            "invalid_choice": _(
                "Choose a member of the managing agency who is not one of its owners or admins."
            ),
        },
    )
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.MARKETING)

    def __init__(
        self, *args, staff: QuerySet[User], role_choices: list[tuple[str, str]], **kwargs
    ) -> None:
        kwargs.setdefault("prefix", "agency")  # the members page has another "role" field
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = staff
        self.fields["role"].choices = role_choices


class APIKeyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    scope = forms.ChoiceField(
        label=_("Scope"), choices=APIKey.Scope.choices, initial=APIKey.Scope.READ
    )
    role = forms.ChoiceField(
        label=_("Role"),
        choices=[(value, label) for value, label in Role.choices if value != Role.OWNER],
        initial=Role.READ_ONLY,
    )


class AuditLogFilterForm(forms.Form):
    action = forms.CharField(
        label=_("Action"),
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": "api_key", "list": "audit-actions"}),
    )


class SignupForm(forms.Form):
    """Sign-up of an invited person: the email is the invitation's."""

    full_name = forms.CharField(label=_("Full name"), max_length=150)
    password1 = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label=_("Password (again)"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, email: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self) -> dict:
        cleaned = super().clean()
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", _("The two passwords do not match."))
        elif password1:
            user = User(email=self.email, full_name=cleaned.get("full_name", ""))
            try:
                password_validation.validate_password(password1, user)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


class WebhookEndpointForm(forms.Form):
    """An endpoint's URL, description and events (checkboxes of the catalogue, or all)."""

    url = forms.URLField(
        label=_("URL"),
        max_length=2000,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/ryorin-webhooks"}),
    )
    description = forms.CharField(label=_("Description"), max_length=200, required=False)
    all_events = forms.BooleanField(
        label=_("All events, including ones added later"), required=False
    )
    events = forms.MultipleChoiceField(
        label=_("Events"), required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, **kwargs) -> None:
        from accounts.webhooks.catalogue import event_types

        super().__init__(*args, **kwargs)
        self.fields["events"].choices = [
            (event_type.name, f"{event_type.label} ({event_type.name})")
            for event_type in event_types()
        ]

    def clean(self) -> dict:
        cleaned = super().clean()
        if not cleaned.get("all_events") and not cleaned.get("events"):
            raise forms.ValidationError(_("Choose at least one event."))
        return cleaned

    def event_names(self) -> list[str]:
        return ["*"] if self.cleaned_data["all_events"] else list(self.cleaned_data["events"])
