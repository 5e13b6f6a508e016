"""Sources with an origin: where documentation is fetched from, and how it is kept fresh."""
