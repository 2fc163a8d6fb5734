"""The platform's contracts: canonical event models, JSON Schemas and ClickHouse DDL.

This package imports nothing else of iocstream; every other package may import it.
"""
