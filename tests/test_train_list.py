"""``dyntrace train --list``: dyntrace's own one-line description of every catalog entry, aliases marked."""

from click.testing import CliRunner

from dyntrace import catalog
from dyntrace.commands.train import command


def _listing() -> dict[str, dict[str, str]]:
    result = CliRunner().invoke(command, ["--list"])
    assert result.exit_code == 0, result.output
    listing, kind = {}, None
    for line in result.output.splitlines():
        if not line.startswith(" "):
            kind = line.rstrip(":")
            listing[kind] = {}
        else:
            name, text = line.strip().split(None, 1)
            listing[kind][name] = text
    return listing


def test_every_entry_once_with_one_line_of_its_own():
    listing = _listing()
    assert list(listing) == catalog.kinds()
    for kind, entries in listing.items():
        assert list(entries) == catalog.names(kind)
        for name, text in entries.items():
            assert text and "\n" not in text and "``" not in text, (kind, name)
            # torch's docstrings describe torch's API ("Applies the ... function element-wise")
            assert not text.startswith(("Applies the", "During training, randomly")), (kind, name, text)


def test_aliases_point_to_the_name_that_shares_their_entry():
    listing = _listing()
    aliases = {
        (kind, name): text.removeprefix("alias of ")
        for kind, entries in listing.items()
        for name, text in entries.items()
        if text.startswith("alias of ")
    }
    assert aliases == {("activation", "swish"): "silu", ("optimizer", "nag"): "nesterov"}
    for (kind, name), main in aliases.items():
        assert catalog.get(kind, name) is catalog.get(kind, main)
        assert not listing[kind][main].startswith("alias of ")
