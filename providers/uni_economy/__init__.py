"""Uni Economy (Unimicro): private_key_jwt auth, /api/biz entities, signed event-plan webhooks."""

from providers.kind import ProviderKind
from providers.settings import Setting, SettingSchema
from providers.uni_economy import webhooks
from providers.uni_economy.provider import UniEconomyProvider

KIND = ProviderKind(
    factory=UniEconomyProvider,
    parse_webhook=webhooks.parse_webhook,
    register_webhook=UniEconomyProvider.register_webhook,
    version_kind="timestamp",
    settings=SettingSchema(
        (
            Setting("company_key", "text", "the Uni company's key (CompanyKey header)", company=True),
            Setting("vat_code.<rate>", "text", "the Uni VatCode for a VAT rate"),
            Setting("revenue_account", "integer", "account number of invoice lines without their own"),
            Setting("finalise_invoices", "flag", "invoice (finalise) drafts after writing them"),
            Setting("send_invoices", "flag", "not supported: Uni distributes by the company's plan"),
            Setting("release_invoices", "flag", "not supported: use finalise_invoices"),
            Setting("department_id", "integer", "department dimension of invoices", company=True),
            Setting("base_currency", "text", "the company's own currency (default NOK)"),
            Setting("token_url", "text", "the login host's token endpoint"),
            Setting("webhook_tolerance_s", "positive_number", "reject webhooks signed longer ago"),
        )
    ),
)

__all__ = ["KIND", "UniEconomyProvider"]
