"""The linecheck agent: runs on the office gateway, checks the line, spools and publishes results."""
