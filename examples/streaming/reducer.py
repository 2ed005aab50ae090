#!/usr/bin/env python3
"""Word count reducer for Hadoop Streaming: its input is `word<TAB>count` lines sorted by
word, so all lines of a word come together; it prints each word's total when the word
changes."""
import sys

current_word = None
current_count = 0
for line in sys.stdin:
    word, _, count = line.rstrip("\n").partition("\t")
    try:
        count = int(count)
    except ValueError:  # not a count: skip the line
        continue
    if word == current_word:
        current_count += count
    else:
        if current_word is not None:
            print(f"{current_word}\t{current_count}")
        current_word = word
        current_count = count
if current_word is not None:
    print(f"{current_word}\t{current_count}")
