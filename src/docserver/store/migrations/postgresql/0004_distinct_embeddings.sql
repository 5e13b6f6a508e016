-- Each distinct embedded text's vector, stored once, and the HNSW index over those.
--
-- Versions side by side repeat most of their sections: the same title, heading
-- and text, so the same vector. Kept on every chunk, 45 copies of each vector
-- made an HNSW graph whose nodes linked mostly to their own copies, and recall
-- at 1,000,000 chunks fell to 0.64-0.87 (docs/performance.md). Now a chunk points
-- to its text's row in `embeddings` (`key`: a SHA-256 of the embedded text's parts,
-- see `embedding_key` in store/postgres_schema.py); the graph holds each vector
-- once, and a filtered search reads its chunks through `chunks_by_embedding`.
--
-- `key` is not unique: two ingests in flight that bring the same new text each
-- add a row (as before this migration, the vector is then stored twice) instead
-- of waiting on each other's uncommitted row, which could deadlock two ingests.

CREATE TABLE embeddings (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key       bytea NOT NULL,
    -- NULL for a text without words (see chunks.embedding before this migration).
    embedding vector
);
CREATE INDEX embeddings_by_key ON embeddings (key);

-- Rows of `embeddings` whose chunks were deleted, to be checked and removed by
-- the next collection (store/postgres_sql.py: collect_embeddings), which runs
-- when no ingest is in flight. A trigger fills it, so every way a chunk goes
-- (a document replaced or removed, a source removed, cascades) is caught.
CREATE TABLE embedding_orphans (
    embedding_id bigint NOT NULL
);

CREATE FUNCTION docserver_note_orphans() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embedding_orphans (embedding_id)
    SELECT DISTINCT embedding_id FROM gone WHERE embedding_id IS NOT NULL;
    RETURN NULL;
END
$$;

ALTER TABLE chunks ADD COLUMN embedding_id bigint;

-- Move the vectors of an existing database: one row per distinct text, with the
-- vector of its first chunk (the same embedder gave every copy the same vector).
DO $$
DECLARE
    vector_type text;
    hnsw text;
BEGIN
    SELECT format_type(atttypid, atttypmod) INTO vector_type FROM pg_attribute
    WHERE attrelid = 'chunks'::regclass AND attname = 'embedding' AND NOT attisdropped;
    EXECUTE format('ALTER TABLE embeddings ALTER COLUMN embedding TYPE %s', vector_type);
    -- The vector's storage (in the row where it fits) as the store set it on `chunks`.
    EXECUTE format('ALTER TABLE embeddings ALTER COLUMN embedding SET STORAGE %s',
        (SELECT CASE attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL' WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END
         FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'));
    SELECT indexdef INTO hnsw FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw';

    CREATE TEMPORARY TABLE keyed ON COMMIT DROP AS
        SELECT id, sha256(convert_to(
            length(title)::text || ':' || title || length(heading)::text || ':' || heading || text, 'UTF8'
        )) AS key
        FROM chunks;
    INSERT INTO embeddings (key, embedding)
        SELECT DISTINCT ON (k.key) k.key, c.embedding FROM keyed k JOIN chunks c ON c.id = k.id ORDER BY k.key, k.id;
    UPDATE chunks c SET embedding_id = e.id FROM keyed k JOIN embeddings e ON e.key = k.key WHERE c.id = k.id;

    -- The vectors now live in `embeddings`: the column goes, with its index and
    -- a reindex's side column (an interrupted `docserver reindex` starts over).
    ALTER TABLE chunks DROP COLUMN embedding;
    ALTER TABLE chunks DROP COLUMN IF EXISTS embedding_next, DROP COLUMN IF EXISTS reindexed;
    DELETE FROM meta WHERE key = 'reindex_target';
    IF hnsw IS NOT NULL THEN
        -- The same index (name, m, ef_construction) over the distinct vectors.
        EXECUTE regexp_replace(hnsw, ' ON (\S+\.)?chunks USING ', ' ON \1embeddings USING ');
    END IF;
END
$$;

CREATE INDEX chunks_by_embedding ON chunks (embedding_id, source);

CREATE TRIGGER chunks_note_orphans AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION docserver_note_orphans();
