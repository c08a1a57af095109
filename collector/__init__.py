"""The linecheck collector: ingests agents' results, stores them, raises tickets, verifies promises."""
