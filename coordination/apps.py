from django.apps import AppConfig


class CoordinationConfig(AppConfig):
    name = "coordination"

    def ready(self) -> None:
        # The notification models live beside the code that writes them (models.py is at
        # its size limit); importing the module registers them with this app.
        from coordination import notifications  # noqa: F401
