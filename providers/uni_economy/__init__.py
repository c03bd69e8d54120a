"""Uni Economy (Unimicro): private_key_jwt auth, /api/biz entities, signed event-plan webhooks."""

from providers.uni_economy.provider import UniEconomyProvider

__all__ = ["UniEconomyProvider"]
