"""The live alert feed: an aiohttp web page for the operators of the IOC (``iocstream web``).

Modules, one concept each:

* :mod:`streams.web.settings` — ``IOC_WEB_*`` settings (the access token is a secret).
* :mod:`streams.web.book` — pure: current state per alert fingerprint and each alert's history,
  rebuilt from ``ioc.alerts`` events (idempotent under redelivery), with filters.
* :mod:`streams.web.auth` — token check and session cookie (constant-time, never logged).
* :mod:`streams.web.actions` — operator actions from the page to ``ioc.alert-actions``.
* :mod:`streams.web.tiles` — per-district indicator tiles read from ClickHouse.
* :mod:`streams.web.feed` — the Kafka consumer that feeds the book and the SSE subscribers.
* :mod:`streams.web.app` — the aiohttp application (routes, SSE, static files).
* :mod:`streams.web.cli` — ``iocstream web``.

The page itself is plain HTML/CSS/JS in ``static/`` (no front-end build).
"""
