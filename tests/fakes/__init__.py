"""In-memory fakes of the ports (clock, publisher, store, scanner) for unit tests of the pure cores."""
