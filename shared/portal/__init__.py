"""The MSSP portal: every tenant's health and alerts in one browser view."""
