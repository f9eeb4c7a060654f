"""Outbound delivery and inbound reports: MIME building, transports, the outbox worker, DSN/ARF parsing.

Each module has one concern and plugs into the engine through a small interface: the engine
writes rows into the outbox (``messages``), :mod:`.outbox` takes them out through a
:class:`~dripflow.delivery.transport.Transport`, and what comes back (SMTP rejections, bounce and
complaint reports) re-enters the engine as ordinary X2 events.
"""
