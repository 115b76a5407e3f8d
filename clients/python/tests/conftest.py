"""The client's tests run against a real ltpdash: they reuse the server suite's fixtures
(a real daphne, agents, operators) from the repository's tests/conftest.py."""

from tests.conftest import (  # noqa: F401 (fixtures)
    agents,
    daphne_server,
    django_db_setup,
    live,
    operators,
)
