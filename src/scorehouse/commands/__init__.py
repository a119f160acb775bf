"""The subcommands of `scorehouse`, one module per area; scorehouse.cli puts them together."""
