"""Stepline: durable step functions on Celery and Redis."""
