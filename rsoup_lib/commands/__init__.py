"""One module per ``rsoup`` subcommand; see ``rsoup_lib.cli`` for the contract."""
