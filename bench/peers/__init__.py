"""The peers ``cwi bench`` is compared with: taskiq and dramatiq on RabbitMQ.

Their dependencies are the ``peers`` extra (``pip install -e '.[peers]'``), not installed by ``make test``.
"""
