-- The HNSW index holds the vectors at half precision (`halfvec`).
--
-- The graph walk of a search computes a distance to every vector it reaches;
-- at half precision each is half the bytes read (1 KB instead of 2 KB for the
-- built-in embedder's 512 dimensions), so the same walk reads half the memory,
-- and a search keeps as long a candidate list at less cost (docs/performance.md,
-- "The HNSW index at half precision"). The rows it returns are ranked by their
-- full-precision distance (store/postgres_vector.py), and the exact search and
-- the stored vectors are unchanged. pgvector indexes `halfvec` up to 4,000
-- dimensions (`vector` up to 2,000), so vectors of 2,001 to 4,000 dimensions,
-- searched without an index until now, get one too.
--
-- The new index is built with the old one's `m` and `ef_construction` (the
-- defaults, 16 and 64, where there was none), inside the migration's
-- transaction: ingests wait for it, searches go on with the old index until
-- the old one is dropped at the end (a few seconds to minutes for 100,000
-- vectors; raise `maintenance_work_mem` first for a large database). A side
-- index of a reindex in progress is dropped: the reindex builds it again, at
-- half precision.
DO $$
DECLARE
    dimension integer;
    old_index regclass := to_regclass('chunks_embedding_hnsw');
    definition text;
    settings text := 'm = 16, ef_construction = 64';
BEGIN
    DROP INDEX IF EXISTS chunks_embedding_next_hnsw;
    -- pgvector keeps a `vector(N)` column's dimension in its type modifier; -1 before an embedder is bound,
    -- when binding it builds the index.
    SELECT atttypmod INTO dimension FROM pg_attribute
    WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding' AND NOT attisdropped;
    IF dimension IS NULL OR dimension < 1 OR dimension > 4000 THEN
        RETURN;
    END IF;
    IF old_index IS NOT NULL THEN
        definition := pg_get_indexdef(old_index);
        IF definition LIKE '%halfvec_cosine_ops%' THEN
            RETURN;
        END IF;
        SELECT coalesce(array_to_string(reloptions, ', '), settings) INTO settings FROM pg_class WHERE oid = old_index;
    END IF;
    EXECUTE format(
        'CREATE INDEX chunks_embedding_halfvec_hnsw ON embeddings '
        'USING hnsw ((embedding::halfvec(%s)) halfvec_cosine_ops) WITH (%s)',
        dimension, settings
    );
    DROP INDEX IF EXISTS chunks_embedding_hnsw;
    ALTER INDEX chunks_embedding_halfvec_hnsw RENAME TO chunks_embedding_hnsw;
END
$$;
