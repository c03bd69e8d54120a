"""Tripletex (API v2): customers, suppliers, projects, and invoices made from orders."""

from providers.tripletex.provider import TripletexProvider

__all__ = ["TripletexProvider"]
