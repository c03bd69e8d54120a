"""The message core: one message, both directions.

``runner`` receives and settles; ``dispatch`` parses a delivery and routes it; ``outbound`` pushes a
CW change to the ERP, ``inbound`` applies an ERP change to CW; ``journal`` owns every sync-log
step (and the record's lease), committed with the settlement; ``order`` and ``echo`` decide what
not to write; ``retry`` is the one retry decision; ``connections`` is the one connection directory.
"""
