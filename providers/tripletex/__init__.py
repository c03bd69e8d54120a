"""Tripletex (API v2): customers, suppliers, projects, and invoices made from orders."""

from providers.kind import ProviderKind
from providers.settings import Setting, SettingSchema
from providers.tripletex import webhooks
from providers.tripletex.provider import TripletexProvider

KIND = ProviderKind(
    factory=TripletexProvider,
    parse_webhook=webhooks.parse_webhook,
    register_webhook=TripletexProvider.register_webhook,
    version_kind="integer",
    settings=SettingSchema(
        (
            Setting("vat_code.<rate>", "integer", "the Tripletex vatType id for a VAT rate"),
            Setting(
                "project_manager_id",
                "integer",
                "employee id of the project manager of new projects",
                company=True,
            ),
            Setting("department_id", "integer", "department of customers, projects and orders", company=True),
            Setting("send_invoices", "flag", "send charged invoices to the customer (default false)"),
            Setting("currency", "text", "the company currency orders are written in (default NOK)"),
            Setting("company_id", "text", "the client company to act for (default 0: our own)", company=True),
            Setting(
                "api_employee_id", "integer", "override: the employee our changes are made by", company=True
            ),
        )
    ),
)

__all__ = ["KIND", "TripletexProvider"]
