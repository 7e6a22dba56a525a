from bertkit.cli import entry

entry()
