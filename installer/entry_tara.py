"""The bundled ``tara`` command (installer/tara.spec)."""

from entry_common import run

from tara_desktop.cli import main

if __name__ == "__main__":
    run(main)
