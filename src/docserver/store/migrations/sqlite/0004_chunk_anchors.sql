-- The anchor (`id`) of each chunk's section, where its format has one (HTML):
-- a search hit on a web page links to the section, not just the page.
ALTER TABLE chunks ADD COLUMN anchor TEXT NOT NULL DEFAULT '';
