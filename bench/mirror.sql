-- The PostGraphile side of bench/run: schema `pgl` with the same spaces and memories as
-- Memspace's own tables (live spaces, unexpired memories), so both read the same rows from
-- the same PostgreSQL. Only the columns the benchmark query touches plus a few plain ones.
\set ON_ERROR_STOP on
DROP SCHEMA IF EXISTS pgl CASCADE;
CREATE SCHEMA pgl;

CREATE TABLE pgl.spaces (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    description text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE pgl.memories (
    id         uuid PRIMARY KEY,
    space_id   uuid NOT NULL REFERENCES pgl.spaces (id),
    content    text NOT NULL,
    importance integer NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

INSERT INTO pgl.spaces (id, name, description, created_at, updated_at)
SELECT id, name, description, created_at, updated_at
FROM public.spaces
WHERE deleted_at IS NULL;

INSERT INTO pgl.memories (id, space_id, content, importance, created_at, updated_at)
SELECT m.id, m.space_id, m.content, m.importance, m.created_at, m.updated_at
FROM public.memories m
JOIN pgl.spaces s ON s.id = m.space_id
WHERE m.expires_at IS NULL OR m.expires_at > now();

CREATE INDEX memories_space_id_idx ON pgl.memories (space_id);

-- Fresh statistics and visibility maps for both sides (Memspace's tables too).
VACUUM ANALYZE;

SELECT (SELECT count(*) FROM pgl.spaces) AS pgl_spaces,
       (SELECT count(*) FROM pgl.memories) AS pgl_memories,
       (SELECT count(*) FROM public.memories) AS memspace_memories;
