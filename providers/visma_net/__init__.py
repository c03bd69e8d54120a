"""Visma.net ERP (api.finance.visma.net): OAuth2 client credentials, value-wrapped DTOs."""

from providers.kind import ProviderKind
from providers.settings import Setting, SettingSchema
from providers.visma_net import webhooks
from providers.visma_net.provider import VismaNetProvider

KIND = ProviderKind(
    factory=VismaNetProvider,
    parse_webhook=webhooks.parse_webhook,
    register_webhook=VismaNetProvider.register_webhook,
    version_kind="timestamp",
    settings=SettingSchema(
        (
            Setting(
                "tenant_id", "text", "the Visma.net company (tenant) the API client acts for", company=True
            ),
            Setting("vat_code.<rate>", "text", "the Visma.net VAT code id for a VAT rate"),
            Setting("revenue_account", "text", "account of invoice lines without their own"),
            Setting("project_template", "text", "template of new projects (or project_subaccount)"),
            Setting(
                "project_subaccount",
                "text",
                "default subaccount of new projects: segmentId:value,…",
                company=True,
            ),
            Setting("release_invoices", "flag", "release invoices after writing them (default false)"),
            Setting("finalise_invoices", "flag", "the same as release_invoices"),
            Setting("send_invoices", "flag", "send released invoices by AutoInvoice (default false)"),
            Setting("customer_class_id", "text", "class of new customers"),
            Setting("supplier_class_id", "text", "class of new suppliers"),
            Setting("branch_number", "text", "branch of projects and invoices", company=True),
            Setting("token_url", "text", "Visma Connect's token endpoint"),
            Setting("scopes", "text", "OAuth scopes asked for"),
            Setting("webhook_signature_header", "text", "header of the webhook signature"),
            Setting("webhook_tolerance_seconds", "positive_number", "reject webhooks older than this"),
        )
    ),
)

__all__ = ["KIND", "VismaNetProvider"]
