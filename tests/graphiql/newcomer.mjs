// Runs the script of the GraphiQL page (read from stdin) against stand-ins for the DOM,
// React and GraphiQL, as a browser would before any key is set, and checks what a newcomer
// gets: the example as the first tab, the no-key banner and answer (nothing sent to the
// server), and, once a key is typed into the Headers pane, the banner hidden, GraphiQL
// rendered again (it fetches the schema for its docs pane) and requests going to the server.
//
//   node newcomer.mjs < page.html      (prints "ok" or the failed check; exit 1 on failure)
import { readFileSync } from "node:fs";

const page = readFileSync(0, "utf8");
const block = (id) => {
  const open = page.indexOf(`<script id="${id}" type="application/json">`);
  if (open < 0) throw new Error(`no ${id} block`);
  const start = page.indexOf(">", open) + 1;
  return page.slice(start, page.indexOf("</script>", start));
};
const scripts = [...page.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]);
const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); };

const elements = {
  "memspace-example": { textContent: block("memspace-example") },
  "memspace-no-key": { hidden: false },
  graphiql: {},
};
const serverCalls = [];
let fetcherOptions;
const rendered = [];
globalThis.window = { location: { origin: "http://127.0.0.1:4000" } };
globalThis.document = { getElementById: (id) => elements[id] };
globalThis.GraphiQL = {
  createFetcher(options) {
    fetcherOptions = options;
    return (params, opts) => {
      serverCalls.push({ params, opts });
      return Promise.resolve({ data: { __typename: "Query" } });
    };
  },
};
globalThis.React = { createElement: (component, props) => ({ component, props }) };
globalThis.ReactDOM = { createRoot: () => ({ render: (element) => rendered.push(element) }) };

check(scripts.length === 1, `one inline script expected, found ${scripts.length}`);
new Function(scripts[0])();

const example = JSON.parse(block("memspace-example"));
const banner = elements["memspace-no-key"];
check(rendered.length === 1, "GraphiQL is rendered once on load");
const first = rendered[0].props;
check(first.defaultQuery === example.query, "defaultQuery is the Memspace example");
check(first.defaultTabs?.[0]?.query === example.query, "the first tab holds the example");
check(first.defaultTabs?.[0]?.variables === example.variables, "the first tab has its variables");
check(fetcherOptions?.url === "http://127.0.0.1:4000/graphql", "queries go to /graphql");
check(
  fetcherOptions?.subscriptionUrl === "ws://127.0.0.1:4000/graphql",
  "subscriptions go to the same URL"
);

// No key yet: the placeholder header, or none at all.
for (const headers of [{ Authorization: "Bearer <your API key>" }, {}, undefined]) {
  const answer = await first.fetcher({ query: "query IntrospectionQuery { __typename }" }, { headers });
  const error = answer?.errors?.[0];
  check(error?.extensions?.code === "UNAUTHENTICATED", `no key (${JSON.stringify(headers)}): coded answer`);
  for (const hint of ["MEMSPACE_ADMIN_KEY", "createApiKey", "Authorization", "Bearer"]) {
    check(error?.message?.includes(hint), `no key: the answer mentions ${hint}`);
  }
  check(banner.hidden === false, "no key: the banner shows");
}
check(serverCalls.length === 0, "nothing is sent to the server without a key");

// The newcomer types a key into the Headers pane.
first.onEditHeaders('{"Authorization": "Bearer my-key-1234567890"}');
check(banner.hidden === true, "with a key the banner hides");
check(rendered.length === 2, "with a key GraphiQL is rendered again (schema refetched)");
const second = rendered.at(-1).props;
check(second.fetcher !== first.fetcher, "a new fetcher identity");
await second.fetcher({ query: "{ __typename }" }, { headers: { Authorization: "Bearer my-key-1234567890" } });
await second.fetcher({ query: "{ __typename }" }, { headers: { "X-API-Key": "my-key-1234567890" } });
check(serverCalls.length === 2, "with a key requests go to the server");

if (failures.length) {
  for (const f of failures) console.log(`FAILED: ${f}`);
  process.exit(1);
}
console.log("ok");
