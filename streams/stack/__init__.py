"""The local stack: real Kafka (KRaft), Mosquitto and the embedded ClickHouse, on loopback.

``iocstream stack up | down | status`` drive it. Each service is a child process started
detached, with its pid recorded under ``<data dir>/run``; ``down`` stops only those pids.
"""
