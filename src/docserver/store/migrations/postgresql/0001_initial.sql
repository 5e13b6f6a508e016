-- Documents, their chunks, a full-text index and a vector column over the chunks.
-- The pgvector extension is created (or its absence reported) before this runs.
-- The vector column gets its dimension and its HNSW index when an embedder is
-- bound, because the dimension comes from the embedder.

-- English stemming without a stopword list: "configure" matches "configuration",
-- and a query made only of common words ("how to") still finds something.
-- Which words carry meaning is decided on the query side (store/terms.py).
CREATE TEXT SEARCH DICTIONARY docserver_stem (TEMPLATE = snowball, LANGUAGE = english);
CREATE TEXT SEARCH CONFIGURATION docserver (COPY = english);
ALTER TEXT SEARCH CONFIGURATION docserver
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part WITH docserver_stem;

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE sources (
    name       text PRIMARY KEY,
    updated_at timestamptz NOT NULL
);

CREATE TABLE documents (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text NOT NULL REFERENCES sources (name) ON DELETE CASCADE,
    path         text NOT NULL,
    title        text NOT NULL,
    content_hash text NOT NULL,
    content      text NOT NULL,
    ingested_at  timestamptz NOT NULL,
    UNIQUE (source, path)
);

-- source and title are copied from the document: the source filter then needs
-- no join, and the generated tsvector can weigh the title.
CREATE TABLE chunks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    source      text NOT NULL,
    ordinal     integer NOT NULL,
    title       text NOT NULL,
    heading     text NOT NULL,
    text        text NOT NULL,
    start_line  integer NOT NULL,
    end_line    integer NOT NULL,
    -- NULL for a chunk without words: a zero vector has no direction to compare.
    embedding   vector,
    -- Weights: heading A, title B, text D (ts_rank_cd weighs them 1.0, 0.6, 0.2),
    -- the same 5:3:1 as the SQLite store's bm25 weights.
    tsv         tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('docserver', heading), 'A')
        || setweight(to_tsvector('docserver', title), 'B')
        || setweight(to_tsvector('docserver', text), 'D')
    ) STORED
);

CREATE INDEX chunks_by_document ON chunks (document_id);
CREATE INDEX chunks_by_source ON chunks (source);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv);

-- The corpus version starts at the creation time in milliseconds, not at 0:
-- a database created anew never repeats the versions of an old one, so
-- results cached under those versions (in Redis) can never be served for it.
INSERT INTO meta (key, value)
VALUES ('corpus_version', (floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint::text);
