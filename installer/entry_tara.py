"""The bundled ``tara`` command (installer/tara.spec)."""

from entry_common import run


def main() -> int:
    # imported here, not at the top, so that `tara -m tara_desktop.cli` runs a fresh module as python -m does
    from tara_desktop.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    run(main)
