-- The vector ids of a filter's chunks from the index alone.
--
-- A filter of few chunks is searched exactly (store/postgres_exact.py): its
-- chunks' vector ids are read, up to one past EXACT_AT_MOST, which both decides
-- whether the filter is small enough and gives the vectors to compare. With the
-- index on `source` alone every id was a fetch of the chunk's row from the table
-- (wide: text, tsvector); with `embedding_id` carried in the index it is an
-- index-only scan. Carried (INCLUDE), not a key column: the HNSW search's probe
-- "has this vector a chunk under the filter" stays on `chunks_by_embedding`, one
-- descent by vector id, instead of one per source of the filter in this index.
-- The new index answers whatever `chunks_by_source` answered (the same key), so
-- that one goes: one index fewer to keep up on every write.
--
-- Built inside the migration's transaction: writes to `chunks` wait for it
-- (half a second for 300,000 chunks; searches go on).
CREATE INDEX chunks_by_source_embedding ON chunks (source) INCLUDE (embedding_id);
DROP INDEX chunks_by_source;
