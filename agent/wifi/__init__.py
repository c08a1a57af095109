"""WiFi on the gateway: pure parsers for `iw` and /proc/net/wireless output, the I/O seam that runs
them, and the assessment that turns what they report into metrics and findings.

The parsers never run anything; they are tested on captured outputs in tests/data/iw/.
"""
