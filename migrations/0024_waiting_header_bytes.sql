-- 0024_waiting_header_bytes: the exact bytes of a waiting delivery's headers.
--
-- ordered_waiting.headers (0011) is text[]: a header value that is not UTF-8 (ingest forwards
-- obs-text, bytes 0x80-0xFF, as the provider sent them) was stored with U+FFFD in its place, and
-- the delivery, once released, was sent with those bytes instead of its own. header_bytes holds
-- the same list (name, value, name, value, ...) as bytea[], byte for byte; readers take it when
-- it is there, and headers otherwise (a row written before this migration, or by a worker of an
-- earlier release during a rolling upgrade). headers is still written (lossy, as before): the
-- earlier release reads it, and hookrelay_waiting_attempts (0020) counts attempts from it.
--
-- An earlier release's worker that replaces a row's message (a copy with more attempts,
-- shared/store/ordered_waiting_sql.h) sets headers only: the trigger drops header_bytes then, so
-- the row is not read with the older message's headers.
--
-- A nullable column without a default: no rewrite, the table's lock is held for a moment only.

ALTER TABLE ordered_waiting ADD COLUMN header_bytes bytea[];

CREATE FUNCTION hookrelay_waiting_header_bytes_stale() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.header_bytes IS NOT DISTINCT FROM OLD.header_bytes THEN
    NEW.header_bytes := NULL;
  END IF;
  RETURN NEW;
END;
$$;

CREATE TRIGGER ordered_waiting_header_bytes_stale
  BEFORE UPDATE OF headers ON ordered_waiting FOR EACH ROW
  WHEN (NEW.headers IS DISTINCT FROM OLD.headers)
  EXECUTE FUNCTION hookrelay_waiting_header_bytes_stale();
