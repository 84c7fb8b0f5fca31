"""REST API of nurturing (mounted by campaigns/api/urls.py)."""
