"""The bundled ``tara-desktop`` program (installer/tara.spec)."""

from entry_common import run


def main() -> int:
    # imported here so that `tara-desktop -m MODULE` (the training worker) does not load the GUI first
    from tara_desktop.ui.app import main as app_main

    return app_main()


if __name__ == "__main__":
    run(main)
