// Runs the operations relay-compiler generated (src/__generated__/) against a live Memspace, as
// Relay's network layer would send them: the refetch query of `SpaceDetails_space` and the
// pagination query of `SpaceMemories_space`, page after page until `hasNextPage` is false.
//
//   MEMSPACE_URL=http://127.0.0.1:8080 MEMSPACE_KEY=<api key> npm run live
import type { ConcreteRequest } from "relay-runtime";
import refetchQuery from "./__generated__/SpaceDetailsRefetchQuery.graphql.ts";
import paginationQuery from "./__generated__/SpaceMemoriesPaginationQuery.graphql.ts";

const base = process.env.MEMSPACE_URL ?? "http://127.0.0.1:8080";
const key = process.env.MEMSPACE_KEY ?? "";

type Json = Record<string, any>;

function fail(message: string): never {
  console.error(`relay live: ${message}`);
  process.exit(1);
}

async function send(query: string, variables: Json): Promise<Json> {
  const res = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/graphql-response+json",
      authorization: `Bearer ${key}`,
    },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as Json;
  if (body.errors) fail(`${JSON.stringify(body.errors)} for ${query.slice(0, 80)}…`);
  return body.data;
}

/** Relay's network layer sends `params.text` with the operation's variables. */
async function run(request: ConcreteRequest, variables: Json): Promise<Json> {
  const text = request.params.text;
  if (!text) fail(`${request.params.name} has no text (persisted?)`);
  return send(text, variables);
}

const name = `relay-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
const created = await send(
  "mutation($i: CreateSpaceInput!) { createSpace(input: $i) { id } }",
  { i: { name } },
);
const spaceId: string = created.createSpace.id;
const contents = ["first note", "second note", "third note", "fourth note", "fifth note"];
await send(
  "mutation($s: ID!, $m: [MemoryInput!]!) { createMemories(spaceId: $s, inputs: $m) { id } }",
  { s: spaceId, m: contents.map((content) => ({ content })) },
);

// useRefetchableFragment: the refetch query goes through node(id:).
const details = await run(refetchQuery, { id: spaceId });
if (details.node?.__typename !== "Space" || details.node.name !== name)
  fail(`refetch answered ${JSON.stringify(details)}`);
if (details.node.memoryCount !== contents.length)
  fail(`memoryCount ${details.node.memoryCount}, expected ${contents.length}`);

// usePaginationFragment: pages of 2 until the connection says there is no next page.
const seen: string[] = [];
let cursor: string | null = null;
for (let page = 0; page < 10; page++) {
  const data = await run(paginationQuery, { id: spaceId, count: 2, cursor });
  const conn = data.node?.memories;
  if (!conn) fail(`pagination answered ${JSON.stringify(data)}`);
  for (const edge of conn.edges) seen.push(edge.node.content);
  if (!conn.pageInfo.hasNextPage) break;
  cursor = conn.pageInfo.endCursor;
}
if (seen.length !== contents.length || new Set(seen).size !== contents.length)
  fail(`paged through ${JSON.stringify(seen)}, expected the ${contents.length} memories once each`);

console.log(`relay live: refetch and ${seen.length} memories in pages of 2 through node(id:) — ok`);
