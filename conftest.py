"""Root conftest: registers every fixture module under tests/fixtures as a plugin.

Fixtures that start real components (Mosquitto, pcscd, pseudo-terminals) live
there, one module per component, so a test file only names the fixture it needs.
"""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "tests" / "fixtures").glob("[a-z]*.py")
)
