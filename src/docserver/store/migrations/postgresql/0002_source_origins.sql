-- Where each source comes from, so `docserver refresh` can fetch it again
-- without being told, and how its last refreshes went (`docserver sources`,
-- the freshness metrics). All NULL for sources ingested before this version:
-- they are listed as before, and refreshed only once ingested again.
ALTER TABLE sources
    ADD COLUMN origin text,
    -- The ingest options: include/exclude globs, git ref and path.
    ADD COLUMN options jsonb,
    -- `--version LABEL`; the source's stored name is then `NAME@LABEL`.
    ADD COLUMN version text,
    -- What was ingested, where the origin can say (a git commit).
    ADD COLUMN revision text,
    ADD COLUMN refreshed_at timestamptz,
    ADD COLUMN last_error text,
    ADD COLUMN last_error_at timestamptz;
