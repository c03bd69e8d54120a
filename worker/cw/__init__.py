"""Contracting Works' own APIs as the worker uses them: the port, its HTTP adapter and a fake CW."""
