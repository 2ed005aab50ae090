"""Grep: every match of a regular expression in the input, with its number of occurrences.

    jetshell run examples/grep/grep.py Grep INPUT... OUTPUT 'PATTERN' [--group N] [--ignore-case]

Like Hadoop's Grep example: each match (or the text of capturing group N) found in a line is
counted, over all lines of all inputs. The output has one `match<TAB>count` line per distinct
match (the empty string too, for a pattern that can match it, as Python's re.finditer does).
The user counter grep/matching_lines counts the lines with at least one match.
"""
import re

from minijet import MapReduceJob, Param, context
from minijet.errors import InvalidArgument


class Grep(MapReduceJob):
    """Count the matches of PATTERN (a Python regular expression) in the input lines."""

    reducers = 2
    params = [
        Param("pattern", help="Python regular expression searched in every line"),
        Param("--group", int, default=0, help="count this capturing group instead of the "
                                              "whole match"),
        Param("--ignore-case", bool, default=False, help="match case-insensitively"),
    ]

    @classmethod
    def parse_params(cls, args, prog=None):
        """A bad pattern or group is the user's mistake: one clear message at submit time."""
        values = super().parse_params(args, prog)
        try:
            regex = _compile(values["pattern"], values["ignore_case"])
        except re.error as e:
            raise InvalidArgument(f"Grep: bad pattern {values['pattern']!r}: {e}") from None
        if not 0 <= values["group"] <= regex.groups:
            raise InvalidArgument(f"Grep: --group {values['group']}: the pattern has "
                                  f"{regex.groups} capturing group(s)")
        return values

    def __init__(self, params=None):
        super().__init__(params)
        self._finditer = _compile(self.pattern, self.ignore_case).finditer
        self._matching_lines = context.counter("grep", "matching_lines")

    def mapper(self, key, line):
        group = self.group
        matched = False
        for m in self._finditer(line):
            text = m.group(group)
            if text is not None:   # an optional group that did not take part
                matched = True
                yield text, 1
        if matched:
            self._matching_lines.increment()

    def combiner(self, key, counts):
        yield key, sum(counts)

    def reducer(self, key, counts):
        yield key, sum(counts)


def _compile(pattern: str, ignore_case: bool) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE if ignore_case else 0)
