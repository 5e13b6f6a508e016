-- Documents, their chunks, and a full-text index over the chunks.
-- The vector table (sqlite-vec) is created when the embedder is bound,
-- because its dimension comes from the embedder.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE sources (
    name       TEXT PRIMARY KEY,
    updated_at TEXT NOT NULL
);

CREATE TABLE documents (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL REFERENCES sources(name) ON DELETE CASCADE,
    path         TEXT NOT NULL,
    title        TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    content      TEXT NOT NULL,
    ingested_at  TEXT NOT NULL,
    UNIQUE (source, path)
);

CREATE TABLE chunks (
    id          INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,
    heading     TEXT NOT NULL,
    text        TEXT NOT NULL,
    start_line  INTEGER NOT NULL,
    end_line    INTEGER NOT NULL
);

CREATE INDEX chunks_by_document ON chunks (document_id);

-- rowid = chunks.id. Porter stemming so "configure" matches "configuration".
CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    title, heading, text,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

INSERT INTO meta (key, value) VALUES ('corpus_version', '0');
