"""The inbound direction: ERP changes reported by webhooks, applied to Contracting Works."""
