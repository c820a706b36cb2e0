"""The bundled ``tara-desktop`` program (installer/tara.spec)."""

from entry_common import run

from tara_desktop.ui.app import main

if __name__ == "__main__":
    run(main)
