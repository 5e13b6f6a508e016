-- Where each source comes from, so `docserver refresh` can fetch it again
-- without being told, and how its last refreshes went (`docserver sources`,
-- the freshness metrics). All NULL for sources ingested before this version:
-- they are listed as before, and refreshed only once ingested again.
ALTER TABLE sources ADD COLUMN origin TEXT;
-- The ingest options as JSON: include/exclude globs, git ref and path.
ALTER TABLE sources ADD COLUMN options TEXT;
-- `--version LABEL`; the source's stored name is then `NAME@LABEL`.
ALTER TABLE sources ADD COLUMN version TEXT;
-- What was ingested, where the origin can say (a git commit).
ALTER TABLE sources ADD COLUMN revision TEXT;
ALTER TABLE sources ADD COLUMN refreshed_at TEXT;
ALTER TABLE sources ADD COLUMN last_error TEXT;
ALTER TABLE sources ADD COLUMN last_error_at TEXT;
