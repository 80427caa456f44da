"""One module per ``dyntrace`` sub-command, each exposing a click command named ``command``."""
