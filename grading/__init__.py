"""gradebench's project package and grading app."""

from .celery import app as celery_app

__all__ = ("celery_app",)
