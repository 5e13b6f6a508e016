-- `docserver reindex` builds a new vector table beside the current one and then
-- switches to it, so the table's name is recorded here rather than fixed.
-- (Older docservers, which know only `chunk_vectors`, refuse this schema.)
INSERT OR IGNORE INTO meta (key, value) VALUES ('vector_table', 'chunk_vectors');

-- What each staged vector was made from (see store/base.py chunk_fingerprint):
-- chunk ids can be reused after a delete, so an id alone does not say that a
-- staged vector still belongs to the chunk holding that id.
CREATE TABLE reindex_fingerprints (
    chunk_id    INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL
);
