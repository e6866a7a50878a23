import os

from django.apps import AppConfig


class GradingConfig(AppConfig):
    name = "grading"
    verbose_name = "Grading"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        os.makedirs(settings.VAR_DIR, exist_ok=True)
        # The embedded broker keeps its messages in folders that must exist before a
        # producer or a worker touches them.
        if settings.CELERY_BROKER_URL.startswith("filesystem://"):
            for key in ("data_folder_in", "data_folder_out", "control_folder"):
                folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(key)
                if folder:
                    os.makedirs(str(folder), exist_ok=True)
