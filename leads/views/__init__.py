"""Staff web UI of leads: the leads list (filter, bulk actions, export), one lead and
its timeline, companies, the import wizard and the capture-form builder.

Thin: forms validate shapes, leads.services write, leads.selectors read. Every page is
an accounts.web.tenant_view; leads.urls names every view as `<module>.<name>`.
"""
