"""The record of a request: usage rows, audit, metrics and access logs."""
