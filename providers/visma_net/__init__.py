"""Visma.net ERP (api.finance.visma.net): OAuth2 client credentials, value-wrapped DTOs."""
