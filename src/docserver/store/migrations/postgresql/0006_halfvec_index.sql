-- The HNSW index holds the vectors at half precision (`halfvec`), and an index
-- built with the old defaults is built with the new ones (m 16, ef_construction
-- 200 instead of 64).
--
-- The graph walk of a search computes a distance to every vector it reaches; at
-- half precision each is half the bytes read (1 KB instead of 2 KB for the
-- built-in embedder's 512 dimensions), and the index is half the size. The rows
-- a search returns are ranked by their full-precision distance
-- (store/postgres_vector.py); the stored vectors and the exact search are
-- unchanged. A graph built with the longer candidate list finds a filter's
-- nearest vectors at `ef_search` 500 better than the old one did at 800: on
-- 300,000 chunks of distinct products, recall@10 0.967 to 0.985 for filters of a
-- third to three quarters of the vectors, against 0.942 to 0.975 (docs/performance.md,
-- "The HNSW index at half precision, built with ef_construction 200"). pgvector
-- indexes `halfvec` up to 4,000 dimensions (`vector` up to 2,000), so vectors of
-- 2,001 to 4,000 dimensions, searched without an index until now, get one too.
--
-- An index built with other parameters (DOCSERVER_HNSW_M,
-- DOCSERVER_HNSW_EF_CONSTRUCTION set by hand) keeps them. The new index is built
-- inside the migration's transaction: ingests wait for it, searches go on with
-- the old index, which is dropped at the end (tens of seconds per 100,000
-- vectors on two cores; raise the server's `maintenance_work_mem` first for a
-- large database). A side index of a reindex in progress is dropped: the reindex
-- builds it again, at half precision.
DO $$
DECLARE
    dimension integer;
    old_index regclass := to_regclass('chunks_embedding_hnsw');
    definition text;
    settings text := 'm=16, ef_construction=200';
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
        -- The old defaults as the store wrote them; anything else was chosen.
        SELECT CASE WHEN reloptions IS NULL OR reloptions = '{m=16,ef_construction=64}' THEN settings
                    ELSE array_to_string(reloptions, ', ') END
        INTO settings FROM pg_class WHERE oid = old_index;
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
