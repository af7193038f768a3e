#!/usr/bin/env python3
"""Prints the characters of the bundled font subset (see README.md):
ASCII, Latin-1, general punctuation, CJK symbols and punctuation, full-width forms,
every character of GB2312 (7,445: 6,763 hanzi and 682 symbols), and every non-ASCII
character in the Rust sources of ekey-docs and ekey-domain (the printed words of the forms).
Run from the repository root."""
import glob
import sys

chars = set()
for cp in list(range(0x20, 0x7F)) + list(range(0xA0, 0x100)) + list(range(0x2010, 0x2040)) \
        + list(range(0x3000, 0x3040)) + list(range(0xFF01, 0xFF5F)) + list(range(0xFFE0, 0xFFE7)):
    chars.add(chr(cp))
for hi in range(0xA1, 0xF8):
    for lo in range(0xA1, 0xFF):
        try:
            chars.add(bytes([hi, lo]).decode("gb2312"))
        except UnicodeDecodeError:
            pass
for path in glob.glob("crates/ekey-docs/src/**/*.rs", recursive=True) + \
        glob.glob("crates/ekey-domain/src/**/*.rs", recursive=True):
    with open(path, encoding="utf-8") as f:
        chars.update(c for c in f.read() if ord(c) > 0x7F and c.isprintable())
sys.stdout.write("".join(sorted(chars)))
